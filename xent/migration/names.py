"""Names in source: what a dotted expression refers to through the file's imports, and how
to spell another TensorFlow name with the aliases the file already has.

``import tensorflow as tf1`` makes ``tf1.log`` the qualified name ``tensorflow.log``, in the
TensorFlow namespace ``"tf"`` at path ``"log"``; ``import tensorflow.compat.v1 as tf`` makes
``tf.log`` path ``"log"`` in namespace ``"v1"``.
"""

from __future__ import annotations

import libcst as cst
from libcst.metadata import QualifiedNameProvider, QualifiedNameSource

#: qualified-name prefix -> TensorFlow namespace, most specific first
_NAMESPACES = (
    ("tensorflow.compat.v1.", "v1"),
    ("tensorflow.compat.v2.", "v2"),
    ("tensorflow.", "tf"),
)
_PREFIX = {ns: prefix for prefix, ns in _NAMESPACES}


def dotted(node: cst.CSTNode) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None (calls, subscripts...)."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        head = dotted(node.value)
        return None if head is None else f"{head}.{node.attr.value}"
    return None


def qualified(visitor: cst.MetadataDependent, node: cst.CSTNode) -> str | None:
    """The imported name a dotted expression refers to (``tensorflow.nn.softmax``), or
    None (a local name, or not a plain chain of names)."""
    if dotted(node) is None:
        return None
    names = visitor.get_metadata(QualifiedNameProvider, node, set())
    imported = sorted(q.name for q in names if q.source is QualifiedNameSource.IMPORT)
    return imported[0] if imported else None


def tf_api(qualname: str | None) -> tuple[str, str] | None:
    """``("tf" | "v1" | "v2", path)`` for a TensorFlow name, else None."""
    if qualname is None:
        return None
    for prefix, namespace in _NAMESPACES:
        if qualname.startswith(prefix):
            return namespace, qualname[len(prefix):]
    return None


def in_namespace(namespace: str, path: str) -> str:
    """The qualified name of ``path`` in a TensorFlow namespace."""
    return _PREFIX[namespace] + path


def head_module(func: cst.CSTNode, qualname: str) -> tuple[str, str] | None:
    """(head name, module it stands for) of a dotted expression: ``tf1.nn.softmax`` with
    qualified name ``tensorflow.nn.softmax`` gives ``("tf1", "tensorflow")``."""
    text = dotted(func)
    if text is None:
        return None
    parts, qparts = text.split("."), qualname.split(".")
    if len(qparts) < len(parts) or parts[1:] != qparts[len(qparts) - len(parts) + 1:]:
        return None
    return parts[0], ".".join(qparts[: len(qparts) - len(parts) + 1])


def spell(
    target: str,
    aliases: dict[str, str],
    func: cst.CSTNode | None = None,
    qualname: str | None = None,
) -> cst.BaseExpression | None:
    """An expression for the qualified name ``target``: from the import head ``func`` uses
    (``tf1.log`` -> ``tf1.math.log``), else from a module-level alias; None when the file
    has no import that reaches ``target``."""
    candidates: list[tuple[str, str]] = []
    if func is not None and qualname is not None:
        head = head_module(func, qualname)
        if head is not None:
            candidates.append(head)
    candidates += sorted(aliases.items(), key=lambda item: -len(item[1]))
    for name, module in candidates:
        if target == module or target.startswith(module + "."):
            return cst.parse_expression(name + target[len(module):])
    return None


def module_aliases(module: cst.Module, prefix: str = "tensorflow") -> dict[str, str]:
    """Module-level names bound to ``prefix`` or its submodules: ``{"tf": "tensorflow"}``."""
    aliases: dict[str, str] = {}
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            for name, target in _bindings(small):
                if target == prefix or target.startswith(prefix + "."):
                    aliases.setdefault(name, target)
    return aliases


def imports_module(statement: cst.CSTNode, prefix: str) -> bool:
    """Whether a statement line imports ``prefix`` or a submodule of it."""
    if not isinstance(statement, cst.SimpleStatementLine):
        return False
    return any(
        target == prefix or target.startswith(prefix + ".")
        for small in statement.body
        for _, target in _bindings(small)
    )


def _bindings(small: cst.BaseSmallStatement) -> list[tuple[str, str]]:
    """(bound name, what it stands for) of an import statement."""
    out: list[tuple[str, str]] = []
    if isinstance(small, cst.Import):
        for alias in small.names:
            full = dotted(alias.name) or ""
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                out.append((alias.asname.name.value, full))
            else:
                out.append((full.split(".")[0], full.split(".")[0]))
    elif isinstance(small, cst.ImportFrom) and small.module is not None and not small.relative:
        base = dotted(small.module) or ""
        if isinstance(small.names, cst.ImportStar):
            return out
        for alias in small.names:
            name = dotted(alias.name) or ""
            bound = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                bound = alias.asname.name.value
            out.append((bound, f"{base}.{name}"))
    return out
