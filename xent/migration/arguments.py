"""Call arguments in the syntax tree: bind them to a signature, rename and rearrange them
keeping the call's layout (commas, line breaks) where the number of arguments allows."""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

_NO_SPACE = cst.SimpleWhitespace("")


def bind(args: Sequence[cst.Arg], params: Sequence[str]) -> dict[str, cst.Arg] | None:
    """Parameter name -> argument, positional arguments taken in ``params`` order; None for
    ``*args`` / ``**kwargs``, unknown keywords, or an argument given twice."""
    bound: dict[str, cst.Arg] = {}
    for position, arg in enumerate(args):
        if arg.star:
            return None
        if arg.keyword is None:
            if position >= len(params):
                return None
            name = params[position]
        else:
            name = arg.keyword.value
            if name not in params:
                return None
        if name in bound:
            return None
        bound[name] = arg
    return bound


def positional_count(args: Sequence[cst.Arg]) -> int:
    return sum(1 for arg in args if arg.keyword is None and not arg.star)


def renamed(arg: cst.Arg, keyword: str) -> cst.Arg:
    """``arg`` passed as ``keyword=`` (keeps ``=`` spacing of a keyword argument)."""
    if arg.keyword is not None:
        return arg.with_changes(keyword=cst.Name(keyword))
    return arg.with_changes(
        keyword=cst.Name(keyword),
        equal=cst.AssignEqual(whitespace_before=_NO_SPACE, whitespace_after=_NO_SPACE),
    )


def arranged(
    original: Sequence[cst.Arg], items: Sequence[tuple[str | None, cst.BaseExpression]]
) -> list[cst.Arg]:
    """New arguments ``(keyword or None, value)``, each in the layout (comma, whitespace)
    of the original argument at its position; the last keeps the original trailing comma."""
    out: list[cst.Arg] = []
    last = len(items) - 1
    for position, (keyword, value) in enumerate(items):
        source = original[position] if position < len(original) else None
        comma = original[-1].comma if position == last and original else (
            source.comma if source is not None else cst.MaybeSentinel.DEFAULT)
        if position != last and not isinstance(comma, cst.Comma):
            comma = cst.MaybeSentinel.DEFAULT
        arg = cst.Arg(value=value, comma=comma)
        if source is not None:
            arg = arg.with_changes(whitespace_after_arg=source.whitespace_after_arg)
        if keyword is not None:
            arg = renamed(arg, keyword)
            if source is not None and source.keyword is not None:
                arg = arg.with_changes(equal=source.equal)
        out.append(arg)
    return out


def is_literal_none(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "None"


def is_constant(node: cst.BaseExpression) -> bool:
    """A literal number or a list/tuple of them: no gradient can flow from it."""
    if isinstance(node, (cst.Integer, cst.Float)):
        return True
    if isinstance(node, cst.UnaryOperation):
        return is_constant(node.expression)
    if isinstance(node, (cst.List, cst.Tuple)):
        return all(
            isinstance(e, cst.Element) and is_constant(e.value) for e in node.elements
        )
    return False


def source_text(node: cst.CSTNode, limit: int = 40) -> str:
    """The code of ``node`` on one line, shortened to ``limit`` characters."""
    text = " ".join(cst.Module(body=[]).code_for_node(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
