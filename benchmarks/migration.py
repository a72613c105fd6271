"""``xent migrate`` and TensorFlow's ``tf_upgrade_v2`` on a corpus of real TF1 code, side by side.

    python benchmarks/migration.py CORPUS_DIR [--jobs 2] [--json results.json] [--limit N]

Every ``*.py`` and ``*.ipynb`` under CORPUS_DIR goes through both tools the way a user runs
them on one file (``xent migrate --write``; ``tf_upgrade_v2 --infile F --outfile F``), and
through each tool's output again. Per tool it counts:

- crashes: the tool raised (a traceback, no output);
- corrupted files: the output is empty, or no longer parses (Python; a notebook's JSON or
  its code cells, read with IPython's own transformer), where the input did;
- false refusals: the tool refused a file that parses;
- non-idempotent files: a second run changes the output again;
- names TF 2.21 lacks: (file, ``tf.*`` name) pairs that the installed TensorFlow does not
  have, in the output (``import`` lines included; counted for the input too);
- cross-entropy calls (``tf.nn.*softmax_cross_entropy_with_logits*``, ``tf.losses.*``) by
  what became of their meaning: kept; labels and logits swapped; TF1's stopped label
  gradient let in; the LOSSES collection entry dropped (a discarded result, or a file that
  reads the collection); left under a name TF 2.21 lacks.

A call's TF1 meaning: plain ``tensorflow`` positional calls are TF < 1.0's (logits,
labels) (TF 1.x refused them), ``tf.compat.v1`` ones are (labels, logits) (TF 2.x's
compat.v1 reads them so); dense TF1 calls stop the label gradient where the file is TF1
code (it uses a name TF 2.21 lacks).

Needs TensorFlow (for tf_upgrade_v2 and the name check) and IPython (the reference reader
of notebooks); about 10 minutes for 1,100 files on two cores.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
import types
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

TOOLS = ("xent", "tf_upgrade_v2")
_CE = {"nn.softmax_cross_entropy_with_logits": "dense",
       "nn.softmax_cross_entropy_with_logits_v2": "v2",
       "nn.sparse_softmax_cross_entropy_with_logits": "sparse",
       "losses.softmax_cross_entropy": "losses-dense",
       "losses.sparse_softmax_cross_entropy": "losses-sparse",
       "softmax_cross_entropy_with_logits": "xent-dense",
       "sparse_softmax_cross_entropy_with_logits": "xent-sparse"}
CATEGORIES = ("kept", "swapped", "label gradient let in", "loss collection dropped",
              "left under a TF1-only name", "unmatched")


# -- the tools, as a user runs them on one file ------------------------------------------

def run_xent(path: Path, data: bytes) -> tuple[str, bytes]:
    """("ok" | "refused", output bytes)."""
    from xent.migration.source import SourceError, migrate_source

    try:
        if path.suffix == ".ipynb":
            from xent.migration.notebooks import migrate_notebook

            return "ok", migrate_notebook(data, "tf2", str(path))[0]
        after = migrate_source(data, "tf2").after
        assert isinstance(after, bytes)
        return "ok", after
    except SourceError:
        return "refused", data


def run_upgrade(path: Path, data: bytes) -> tuple[str, bytes]:
    """tf_upgrade_v2 --infile F --outfile F: ("ok" | "refused", output bytes)."""
    import contextlib
    import io

    from tensorflow.tools.compatibility import ast_edits, ipynb, tf_upgrade_v2

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "in" + path.suffix)
        out = Path(tmp, "out" + path.suffix)
        source.write_bytes(data)
        upgrader = ast_edits.ASTCodeUpgrader(tf_upgrade_v2.TFAPIChangeSpec())
        with contextlib.redirect_stdout(io.StringIO()):
            if path.suffix == ".ipynb":
                processed, _, _ = ipynb.process_file(str(source), str(out), upgrader)
            else:
                processed, _, _ = upgrader.process_file(str(source), str(out))
        result = out.read_bytes() if out.exists() else b""
        return ("ok" if processed else "refused"), result


RUNNERS = {"xent": run_xent, "tf_upgrade_v2": run_upgrade}


# -- reading source the way Python and IPython do -----------------------------------------

def python_of(path: Path, data: bytes) -> str | None:
    """The Python a file holds (a notebook's code cells, IPython syntax translated),
    or None when it does not parse."""
    try:
        if path.suffix != ".ipynb":
            text = data.decode("utf-8-sig") if data else ""
            ast.parse(text)
            return text
        from IPython.core.inputtransformer2 import TransformerManager

        cells = json.loads(data.decode("utf-8-sig"))["cells"]
        manager = TransformerManager()
        code = []
        for cell in cells:
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            if cell.get("cell_type") != "code" or source.lstrip().startswith("%%"):
                continue
            python = manager.transform_cell(source)
            ast.parse(python)
            code.append(python)
        return "\n".join(code)
    except (SyntaxError, ValueError, UnicodeDecodeError, KeyError, TypeError,
            AttributeError, RecursionError):
        return None


# -- what the code names -------------------------------------------------------------------

def _aliases(tree: ast.AST) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("tensorflow", "xent"):
                    out[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] in ("tensorflow", "xent"):
                for alias in node.names:
                    if alias.name != "*":
                        out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def qualified(node: ast.AST, aliases: dict[str, str]) -> str | None:
    text = _dotted(node)
    if text is None:
        return None
    head, _, rest = text.partition(".")
    if head not in aliases:
        return None
    return aliases[head] + ("." + rest if rest else "")


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def missing_names(tree: ast.AST, aliases: dict[str, str]) -> set[str]:
    """``tf.*`` names (longest chains through modules) the installed TensorFlow lacks."""
    import tensorflow as tf

    found: set[str] = set()
    chains: set[str] = set(m for m in aliases.values() if m.startswith("tensorflow"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = qualified(node, aliases)
            if name is not None and name.startswith("tensorflow."):
                chains.add(name)
    for chain in chains:
        if _importable(chain):  # tensorflow.python.ops...: a module, not an attribute
            continue
        obj: object = tf
        parts = chain.split(".")[1:]
        for index, part in enumerate(parts):
            if not isinstance(obj, types.ModuleType):
                break
            try:
                obj = getattr(obj, part)
            except Exception:  # AttributeError, or a lazy loader failing to load
                found.add("tf." + ".".join(parts[: index + 1]))
                break
    return found


def _namespace(name: str) -> tuple[str, str] | None:
    for prefix, namespace in (("tensorflow.compat.v1.", "v1"), ("tensorflow.compat.v2.", "v2"),
                              ("tensorflow.", "tf"), ("xent.", "xent")):
        if name.startswith(prefix):
            return namespace, name[len(prefix):]
    return None


def ce_calls(tree: ast.AST, aliases: dict[str, str]) -> list[dict[str, object]]:
    """The cross-entropy calls, in source order, with what they mean."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = qualified(node.func, aliases)
        if name is None:
            continue
        found = _namespace(name)
        if found is None:
            continue
        namespace, path = found
        kind = _CE.get(path)
        if kind is None or (namespace == "xent") != kind.startswith("xent"):
            continue
        calls.append({"node": node, "namespace": namespace, "kind": kind, "path": path,
                      "discarded": isinstance(parents.get(node), ast.Expr)})
    calls.sort(key=lambda c: (c["node"].lineno, c["node"].col_offset))  # type: ignore
    return calls


def _stripped(node: ast.AST) -> tuple[str, bool]:
    """(source of an argument without a stop_gradient wrapper, whether it had one)."""
    if isinstance(node, ast.Call) and _dotted(node.func) and str(
            _dotted(node.func)).endswith("stop_gradient") and node.args:
        return ast.unparse(node.args[0]), True
    constant = isinstance(node, (ast.Constant, ast.List, ast.Tuple))
    return ast.unparse(node), constant


def meaning(call: dict[str, object], tf1_file: bool, output: bool) -> dict[str, object] | None:
    """(labels, logits, label gradient stopped, LOSSES collection) of a call: as TF1 ran
    it (input), or as TF 2.21 runs it (output: plain ``tensorflow`` is TF2)."""
    tf1_file = tf1_file and not output
    node = call["node"]
    assert isinstance(node, ast.Call)
    namespace, kind = call["namespace"], str(call["kind"])
    first = "onehot_labels" if kind == "losses-dense" else "labels"
    if namespace == "tf" and kind in ("dense", "sparse") and tf1_file:
        order = ["logits", "labels"]  # TF < 1.0
    else:
        order = [first, "logits"]
    args: dict[str, ast.AST] = {}
    for position, arg in enumerate(node.args):
        if isinstance(arg, ast.Starred) or position >= len(order):
            break
        args[order[position]] = arg
    for keyword in node.keywords:
        if keyword.arg:
            args[keyword.arg] = keyword.value
    if first not in args or "logits" not in args:
        return None
    labels, wrapped = _stripped(args[first])
    dense = kind in ("dense", "losses-dense")
    tf1 = namespace == "v1" or (namespace == "tf" and tf1_file)
    return {"labels": labels, "logits": ast.unparse(args["logits"]),
            "stopped": wrapped or (dense and tf1) or "sparse" in kind,
            "collected": kind.startswith("losses") and namespace in ("tf", "v1"),
            "discarded": call["discarded"]}


# -- one file ------------------------------------------------------------------------------

def measure(path_text: str) -> dict[str, object]:
    path = Path(path_text)
    data = path.read_bytes()
    source = python_of(path, data)
    result: dict[str, object] = {"path": path_text, "parses": source is not None}
    before_tree = ast.parse(source) if source is not None else None
    before_aliases = _aliases(before_tree) if before_tree is not None else {}
    before_missing = (missing_names(before_tree, before_aliases)
                      if before_tree is not None else set())
    result["before_missing"] = sorted(before_missing)
    reads_collection = source is not None and any(
        word in source for word in ("get_total_loss", "get_losses", "GraphKeys.LOSSES"))
    for tool in TOOLS:
        entry: dict[str, object] = {}
        started = time.perf_counter()
        try:
            status, out = RUNNERS[tool](path, data)
            entry["status"] = status
        except Exception as error:  # a crash of the tool is what is measured
            entry["status"] = "crash"
            entry["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
            out = data
        if entry["status"] == "ok" and out:
            try:  # the second run, on the tool's own output
                entry["idempotent"] = RUNNERS[tool](path, out)[1] == out
            except Exception as error:
                entry["idempotent"] = False
                entry["error_again"] = f"{type(error).__name__}: {error}".splitlines()[0]
        entry["seconds"] = time.perf_counter() - started
        after = python_of(path, out) if out else None  # a crash leaves the file as it was
        entry["corrupted"] = source is not None and out != data and after is None
        entry["emptied"] = bool(data.strip()) and not out.strip()
        entry["false_refusal"] = entry["status"] == "refused" and source is not None
        tree = ast.parse(after) if after is not None else None
        aliases = _aliases(tree) if tree is not None else {}
        entry["missing"] = sorted(missing_names(tree, aliases)) if tree is not None else []
        entry["ce"] = _compare_ce(before_tree, before_aliases, tree, aliases,
                                  bool(before_missing), reads_collection)
        result[tool] = entry
    return result


def _compare_ce(before: ast.AST | None, before_aliases: dict[str, str], after: ast.AST | None,
                after_aliases: dict[str, str], tf1_file: bool, reads: bool) -> list[str]:
    if before is None:
        return []
    old = ce_calls(before, before_aliases)
    new = ce_calls(after, after_aliases) if after is not None else []
    if len(old) != len(new):
        return ["unmatched"] * len(old)
    out = []
    for was, now in zip(old, new):
        a, b = meaning(was, tf1_file, False), meaning(now, tf1_file, True)
        missing_name = now["namespace"] == "tf" and (
            now["path"] == "nn.softmax_cross_entropy_with_logits_v2"
            or str(now["path"]).startswith("losses."))
        if a is None or b is None:
            out.append("unmatched")
        elif (a["labels"], a["logits"]) == (b["logits"], b["labels"]):
            out.append("swapped")
        elif (a["labels"], a["logits"]) != (b["labels"], b["logits"]):
            out.append("unmatched")
        elif a["stopped"] and not b["stopped"]:
            out.append("label gradient let in")
        elif a["collected"] and not b["collected"] and (a["discarded"] or reads):
            out.append("loss collection dropped")
        elif missing_name:
            out.append("left under a TF1-only name")
        else:
            out.append("kept")
    return out


# -- the table -----------------------------------------------------------------------------

def summarize(results: list[dict[str, object]]) -> str:
    rows = [("files", lambda e: 1), ("crashes", lambda e: e["status"] == "crash"),
            ("corrupted files (no longer parse)", lambda e: e["corrupted"]),
            ("emptied files (the input replaced by nothing)", lambda e: e["emptied"]),
            ("false refusals (the file parses)", lambda e: e["false_refusal"]),
            ("non-idempotent files", lambda e: not e.get("idempotent", True))]
    lines = ["| | " + " | ".join(f"`{t}`" for t in TOOLS) + " |",
             "|---|" + "---:|" * len(TOOLS)]
    for title, test in rows:
        counts = [sum(bool(test(r[t])) for r in results) for t in TOOLS]  # type: ignore
        lines.append(f"| {title} | " + " | ".join(str(c) for c in counts) + " |")
    before = sum(len(r["before_missing"]) for r in results)  # type: ignore[arg-type]
    counts = [sum(len(r[t]["missing"]) for r in results) for t in TOOLS]  # type: ignore
    lines.append(f"| (file, name) pairs TF 2.21 lacks (input: {before}) | "
                 + " | ".join(str(c) for c in counts) + " |")
    ce = {t: Counter(c for r in results for c in r[t]["ce"]) for t in TOOLS}  # type: ignore
    total = sum(ce[TOOLS[0]].values())
    lines.append(f"| cross-entropy calls ({total}) | | |")
    for category in CATEGORIES:
        lines.append(f"| &nbsp;&nbsp;{category} | "
                     + " | ".join(str(ce[t][category]) for t in TOOLS) + " |")
    seconds = [sum(r[t]["seconds"] for r in results) for t in TOOLS]  # type: ignore
    lines.append("| seconds (two runs per file) | "
                 + " | ".join(f"{s:.0f}" for s in seconds) + " |")
    return "\n".join(lines) + "\n"


def _files(root: Path) -> list[str]:
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found += [os.path.join(directory, f) for f in sorted(files)
                  if f.endswith((".py", ".ipynb"))]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write every file's results here")
    parser.add_argument("--limit", type=int, help="only the first N files")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"{args.corpus}: not a directory", file=sys.stderr)
        return 2
    files = _files(args.corpus)[: args.limit]
    results = []
    started = time.perf_counter()
    partial = open(args.json.with_suffix(".partial.jsonl"), "w") if args.json else None
    with Pool(args.jobs, maxtasksperchild=200) as pool:
        for result in pool.imap_unordered(measure, files, chunksize=1):
            results.append(result)
            if partial is not None:  # what a long run has measured so far
                partial.write(json.dumps(result) + "\n")
                partial.flush()
            if len(results) % 50 == 0:
                print(f"{len(results)}/{len(files)} files, "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    results.sort(key=lambda r: str(r["path"]))
    for result in results:
        result["path"] = os.path.relpath(str(result["path"]), args.corpus)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(summarize(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
