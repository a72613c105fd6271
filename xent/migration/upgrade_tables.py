"""TensorFlow's own TF1 -> TF2 upgrade tables, read from the installed wheel.

``tf_upgrade_v2`` ships with TensorFlow (``tensorflow/tools/compatibility``): the symbol
renames (``renames_v2.py``, generated from the API; ``all_renames_v2.py``, written by hand),
the functions whose arguments changed (``reorders_v2.py`` and the keyword renames, argument
reorders and special transformers of ``tf_upgrade_v2.py``). They are read here as data
(``ast``), without importing TensorFlow: reading takes ~0.1 s where a TensorFlow import
takes several seconds.

What xent takes from them keeps the meaning, provably:

- a rename to ``tf.compat.v1.X`` (TF1's own function, still shipped by TF2);
- a rename generated from the API whose arguments did not change, where the wheel's
  generated API files import the TF1 name and the TF2 name from one place (one function;
  ``tests/test_migrate_tables.py`` checks it against the imported TensorFlow);
- every other TF1-only name (hand-written renames, changed arguments) goes to
  ``tf.compat.v1.<the same name>``, TF1's function, never to a TF2 function whose
  arguments mean something else.

A target is used only when the installed TensorFlow has it (checked against the API
files the wheel generates, again without importing it). Without TensorFlow the tables
are empty and :attr:`Tables.note` says so; xent's own rules still apply.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

#: TF2 modules whose content TensorFlow loads lazily from Keras: not checked, not renamed
_LAZY = ("keras", "compat.v1.keras")
_ESTIMATOR = ("estimator", "compat.v1.estimator")
_KERAS_V1 = ("compat.v1.layers", "layers", "compat.v1.nn.rnn_cell", "nn.rnn_cell")
_IMPORT = re.compile(r"^from (tensorflow\.\S+) import (\w+)(?: as (\w+))?", re.MULTILINE)
_SETATTR = re.compile(r"setattr\(_current_module, \"(\w+)\"|_current_module\.([\w.]+) = ")


@dataclass(frozen=True)
class Tables:
    """What the installed TensorFlow's upgrade tables say, filtered for safety."""

    #: TF1 path (after ``tf.``) -> TF2 path (after ``tf.``) with the same meaning
    renames: dict[str, str] = field(default_factory=dict)
    #: TF1 paths of functions whose arguments changed in TF2 -> the number of leading
    #: positional arguments that keep their meaning (None: only the first is known safe)
    changed: dict[str, int | None] = field(default_factory=dict)
    #: TF1 path -> keywords that TF2 renamed or removed
    keywords: dict[str, frozenset[str]] = field(default_factory=dict)
    #: module prefixes TF2 removed (``contrib``, ``app.flags``...), for the report
    removed_modules: frozenset[str] = frozenset()
    #: TF1 paths the tables rename to something the installed TensorFlow lacks
    #: (``layers.dense``: Keras 3 dropped ``tf.compat.v1.layers``), for the report
    missing: frozenset[str] = frozenset()
    #: the installed API: path -> where it is imported from ("" for a module)
    api: dict[str, str] = field(default_factory=dict)
    #: why the tables are empty, or ""
    note: str = ""

    def __bool__(self) -> bool:
        return bool(self.renames)


def _compatibility_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("tensorflow")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location)
        if (path / "tools" / "compatibility" / "renames_v2.py").is_file():
            return path
    return None


def _assigned(tree: ast.AST, name: str) -> ast.expr | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Name) and target.id == name) or (
                    isinstance(target, ast.Attribute) and target.attr == name
                ):
                    return node.value
    return None


def _literal(tree: ast.AST, name: str) -> dict[str, object]:
    """A module-level (or ``self.``) dict assigned to ``name``: literal values where they
    are literals, None elsewhere (the transformers are functions)."""
    value = _assigned(tree, name)
    if not isinstance(value, ast.Dict):
        return {}
    out: dict[str, object] = {}
    for key, item in zip(value.keys, value.values):
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            try:
                out[key.value] = ast.literal_eval(item)
            except ValueError:
                out[key.value] = None
    return out


def _strings(tree: ast.AST, name: str) -> set[str]:
    value = _assigned(tree, name)
    if not isinstance(value, (ast.Set, ast.List, ast.Tuple)):
        return set()
    return {e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(
        e.value, str)}


def api_names(root: Path) -> dict[str, str]:
    """Every path (after ``tf.``) the installed TensorFlow's generated API files define
    (``math.log``, ``compat.v1.placeholder``...) -> where it is imported from
    (``tensorflow.python.ops.gen_math_ops.log``; "" for a module or an unknown source).
    Two paths with one source are one function. Lazily loaded Keras modules left out."""
    base = root / "_api" / "v2"
    found: dict[str, str] = {}
    files = [(init, ".".join(init.parent.relative_to(base).parts))
             for init in base.rglob("__init__.py")]
    files.append((root / "__init__.py", ""))  # the root namespace
    for init, module in files:
        text = init.read_text(encoding="utf-8", errors="replace")
        head = f"{module}." if module else ""
        if module:
            found.setdefault(module, "")
        for match in _IMPORT.finditer(text):
            source = "" if match.group(1).startswith("tensorflow._api") else (
                f"{match.group(1)}.{match.group(2)}")
            found[head + (match.group(3) or match.group(2))] = source
        for match in _SETATTR.finditer(text):  # set at import time: not looked into
            found.setdefault(head + (match.group(1) or match.group(2)), "?")
    return found


def exists(path: str, api: dict[str, str]) -> bool:
    """Whether ``tf.<path>`` is in the installed API. Lazily loaded Keras: assumed; the
    TF1 layers and RNN cells TensorFlow loads from Keras only with ``tf_keras`` (with
    Keras 3 they raise)."""
    if any(path == m or path.startswith(m + ".") for m in _KERAS_V1):
        return _installed("tf_keras")
    if any(path == m or path.startswith(m + ".") for m in _ESTIMATOR):
        return _installed("tensorflow_estimator")  # gone from TF 2.16 on
    if any(path == m or path.startswith(m + ".") for m in _LAZY):
        return True
    return path in api


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def gone(path: str, api: dict[str, str]) -> str | None:
    """The shortest prefix of ``tf.<path>`` that neither TF2 nor its ``tf.compat.v1``
    has (``layers`` of ``layers.dense``), or None; only modules are looked into."""
    parts = path.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if not exists(prefix, api) and not exists("compat.v1." + prefix, api):
            return prefix
        here = api.get(prefix, api.get("compat.v1." + prefix))
        if here != "":  # a function, a class, or a lazily loaded module: not looked into
            return None
    return None


@functools.lru_cache(maxsize=1)
def load() -> Tables:
    """The tables of the installed TensorFlow (cached); empty with a note without it."""
    root = _compatibility_dir()
    if root is None:
        return Tables(note="TensorFlow is not installed: its upgrade tables (renames of "
                           "the long tail of TF1 names) are not applied; xent's own rules are")
    base = root / "tools" / "compatibility"
    try:
        def parse(name: str) -> ast.AST:
            return ast.parse((base / name).read_text(encoding="utf-8"))

        generated = _literal(parse("renames_v2.py"), "renames")
        all_renames = parse("all_renames_v2.py")
        manual = _literal(all_renames, "manual_symbol_renames")
        reorders = _literal(parse("reorders_v2.py"), "reorders")
        upgrade = parse("tf_upgrade_v2.py")
        keyword_renames = _literal(upgrade, "function_keyword_renames")
        transformers = _literal(upgrade, "function_transformers")
        reorders.update(_literal(upgrade, "manual_function_reorders"))
        reordered = _strings(upgrade, "reordered_function_names")
        removed = _literal(parse("module_deprecations_v2.py"), "MODULE_DEPRECATIONS")
        api = api_names(root)
    except (OSError, SyntaxError, ValueError) as error:
        return Tables(note=f"cannot read TensorFlow's upgrade tables: {error}")
    return _build(generated, manual, reorders, keyword_renames, transformers, reordered,
                  removed, api)


def _strip(name: str) -> str | None:
    return name[3:] if name.startswith("tf.") else None


def _same(first: str, second: str, api: dict[str, str]) -> bool:
    """Whether two API paths are imported from one place: one function."""
    return bool(api.get(first)) and api.get(first) == api.get(second)


def _build(generated: dict[str, object], manual: dict[str, object],
           reorders: dict[str, object], keyword_renames: dict[str, object],
           transformers: dict[str, object], reordered: set[str],
           removed: dict[str, object], api: dict[str, str]) -> Tables:
    changed: dict[str, int | None] = {}
    for name, order in reorders.items():
        path = _strip(name)
        if path is not None and isinstance(order, list):
            prefix = 0
            while prefix < len(order) and order[prefix] is None:
                prefix += 1
            changed[path] = prefix
    for name in [*transformers, *reordered, *keyword_renames]:
        path = _strip(name)
        if path is not None and path not in changed:
            changed[path] = None
    keywords = {path: frozenset(k for k in value)
                for name, value in keyword_renames.items()
                if (path := _strip(name)) is not None and isinstance(value, dict)}
    renames: dict[str, str] = {}
    missing: set[str] = set()
    for name, target in {**generated, **manual}.items():
        path = _strip(name)
        if path is None or not isinstance(target, str) or path.startswith(("contrib.",
                                                                          "keras.")):
            continue
        new = _strip(target)
        same_function = (name in generated and name not in manual and path not in changed
                         and new is not None and _same(f"compat.v1.{path}", new, api))
        if new is None or not (new.startswith("compat.v1.") or same_function):
            new = "compat.v1." + path  # TF1's own function
        if exists(new, api):
            renames[path] = new
        else:
            missing.add(path)
    modules = frozenset(p for name in removed if (p := _strip(name)) is not None)
    for path in modules:  # removed modules TF1's compat.v1 still has (``tf.flags``)
        if not path.startswith("contrib") and exists("compat.v1." + path, api):
            renames.setdefault(path, "compat.v1." + path)
    return Tables(renames=renames, changed=changed, keywords=keywords,
                  removed_modules=modules, missing=frozenset(missing), api=api)
