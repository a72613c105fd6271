"""One module through the rules: the TF1 evidence pass, the Session plan, the rewriting
transformer (calls, names, statements), and the imports it needs.

Statements that go (``sess = tf.Session()``, ``sess.close()``) hand their comments to the
next statement; unwrapped ``with tf.Session() as sess:`` blocks keep theirs. Lines in the
findings are lines of the original source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import libcst as cst
from libcst.metadata import ParentNodeProvider, PositionProvider, QualifiedNameProvider

from xent.migration import names
from xent.migration.arguments import source_text
from xent.migration.lint import lint
from xent.migration.mapping import COMPAT_V1
from xent.migration.report import Finding
from xent.migration.rules import CROSS_ENTROPY, LOSSES, REDUCE, RENAMES, SOFTMAX, Context, Rules
from xent.migration.session import SessionPlan, as_numpy, plan_sessions
from xent.migration.upgrade_tables import Tables, load

#: plain ``tf.*`` paths that exist only in TF1: their presence makes a file TF1 code
TF1_ONLY = COMPAT_V1 | set(RENAMES) | set(LOSSES) | {"nn.softmax_cross_entropy_with_logits_v2"}
_TF1_KEYWORDS = {"dim", "reduction_indices", "keep_dims"}


#: reading the LOSSES collection back (``tf.losses.*`` calls then keep their side effect)
_LOSS_COLLECTION = frozenset({"losses.get_total_loss", "losses.get_losses",
                              "GraphKeys.LOSSES"})


class _Evidence(cst.CSTVisitor):
    """Does the file use TF1-only names or keywords (through plain ``tensorflow``)?
    Does it read the LOSSES collection?"""

    METADATA_DEPENDENCIES = (ParentNodeProvider, QualifiedNameProvider)

    def __init__(self, tables: Tables) -> None:
        super().__init__()
        self.tables = tables
        self.tf1 = False
        self.loss_collection = False

    def visit_Name(self, node: cst.Name) -> None:
        parent = self.get_metadata(ParentNodeProvider, node, None)
        if not (isinstance(parent, cst.Attribute) and parent.attr is node):
            self._check(node)  # a name imported from tensorflow

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._check(node)

    def _check(self, node: cst.Attribute | cst.Name) -> None:
        api = names.tf_api(names.qualified(self, node))
        if api is None:
            return
        if api[1] in _LOSS_COLLECTION:
            self.loss_collection = True
        if api[0] == "tf" and (api[1] in TF1_ONLY or api[1] in self.tables.renames
                               or api[1].startswith("contrib.")):
            self.tf1 = True

    def visit_Call(self, node: cst.Call) -> None:
        api = names.tf_api(names.qualified(self, node.func))
        if api is None:
            return
        path = api[1]
        if path == "get_collection" and node.args and "LOSSES" in source_text(
                node.args[0].value).upper():
            self.loss_collection = True
        if api[0] != "tf":
            return
        keywords = {a.keyword.value for a in node.args if a.keyword is not None}
        if path in SOFTMAX or path in CROSS_ENTROPY or path in REDUCE:
            if keywords & _TF1_KEYWORDS:
                self.tf1 = True
        if keywords & self.tables.keywords.get(path, frozenset()):
            self.tf1 = True


class Rewriter(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (ParentNodeProvider, PositionProvider, QualifiedNameProvider)

    def __init__(self, ctx: Context, plan: SessionPlan) -> None:
        super().__init__()
        self.ctx, self.plan, self.rules = ctx, plan, Rules(ctx)
        self.emptied: set[cst.SimpleStatementLine] = set()

    def line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    # -- expressions -----------------------------------------------------------------------
    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        """``from tensorflow import log``: TF1-only names imported by name are reported."""
        module = names.dotted(node.module) if node.module is not None else None
        if module is None or node.relative or isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            name = names.dotted(alias.name)
            api = names.tf_api(f"{module}.{name}")
            if api is None or api[0] != "tf" or api[1] not in TF1_ONLY:
                continue
            path = api[1]
            where = (f"tensorflow.{RENAMES[path]}" if path in RENAMES else
                     "tensorflow.nn.softmax_cross_entropy_with_logits (same meaning)"
                     if path.endswith("_v2") else f"tensorflow.compat.v1.{path}")
            self.ctx.add(self.line(node), "manual", f"`from {module} import {name}`: TF2 has "
                         f"no tensorflow.{path}; import {where}", "review")

    def leave_Attribute(self, original: cst.Attribute,
                        updated: cst.Attribute) -> cst.BaseExpression:
        parent = self.get_metadata(ParentNodeProvider, original, None)
        called = isinstance(parent, cst.Call) and parent.func is original
        qualname = names.qualified(self, original)
        return self.rules.attribute(updated, qualname, self.line(original), called)

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if self.plan.eager and original in self.plan.runs:
            value = self._fetched(updated, self.plan.runs[original])
            if value is not None:
                if updated.lpar:
                    value = value.with_changes(lpar=[*updated.lpar, *value.lpar],
                                               rpar=[*value.rpar, *updated.rpar])
                self._converted(original, value)
                return value
        qualname = names.qualified(self, original.func)
        parent = self.get_metadata(ParentNodeProvider, original, None)
        return self.rules.call(original, updated, qualname, self.line(original),
                               discarded=isinstance(parent, cst.Expr))

    def _fetched(self, call: cst.Call, kind: str) -> cst.BaseExpression | None:
        """The eager value of ``sess.run(fetch)`` / ``fetch.eval()``."""
        is_run = isinstance(call.func, cst.Attribute) and call.func.attr.value == "run"
        fetch = call.args[0].value if is_run else cast(cst.Attribute, call.func).value
        if kind != "structure":
            return as_numpy(fetch)
        nest = self.ctx.tf("tf", "nest.map_structure")
        if nest is None:
            return None
        return cst.Call(func=nest, args=[
            cst.Arg(cst.parse_expression("lambda t: t.numpy()"),
                    comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))),
            cst.Arg(fetch)])

    def _converted(self, original: cst.Call, value: cst.BaseExpression) -> None:
        self.ctx.add(self.line(original), "session",
                     f"{source_text(original)} -> {source_text(value)} (eager)")

    # -- statements ------------------------------------------------------------------------
    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine,
                                  updated: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        if not self.plan.eager:
            return updated
        kept = [new for old, new in zip(original.body, updated.body)
                if old not in self.plan.remove]
        if len(kept) == len(updated.body):
            return updated
        for old in original.body:
            if old in self.plan.remove:
                self.ctx.add(self.line(old), "session",
                             f"`{source_text(old)}` removed: TF2 runs eagerly")
        if not kept:
            self.emptied.add(original)
            return updated
        kept[-1] = kept[-1].with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
        return updated.with_changes(body=kept)

    def leave_IndentedBlock(self, original: cst.IndentedBlock,
                            updated: cst.IndentedBlock) -> cst.IndentedBlock:
        body, footer = self._statements(original.body, updated.body)
        if not body:
            body = [cst.SimpleStatementLine([cst.Pass()], leading_lines=footer)]
            footer = []
        return updated.with_changes(body=body, footer=[*footer, *updated.footer])

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        body, footer = self._statements(original.body, updated.body)
        return updated.with_changes(body=body, footer=[*footer, *updated.footer])

    def _statements(self, originals: Sequence[cst.BaseStatement],
                    updated: Sequence[cst.BaseStatement]
                    ) -> tuple[list[cst.BaseStatement], list[cst.EmptyLine]]:
        """Drop emptied lines and unwrap Session blocks; carry comments forward."""
        out: list[cst.BaseStatement] = []
        carry: list[cst.EmptyLine] = []
        for old, new in zip(originals, updated):
            if old in self.emptied and isinstance(new, cst.SimpleStatementLine):
                carry += list(new.leading_lines) + _comment(new.trailing_whitespace)
                continue
            if self.plan.eager and old in self.plan.unwrap and isinstance(new, cst.With):
                with_block = cast(cst.With, old)
                first = with_block.items[0].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                item = source_text(first)
                self.ctx.add(self.line(old), "session",
                             f"`with {item}:` block unwrapped: TF2 runs eagerly")
                inner, lines = _unwrapped(new)
                carry += lines
                if not inner:
                    continue
                out.append(inner[0].with_changes(leading_lines=_merge(carry, inner[0])))
                out.extend(inner[1:])
                carry = list(new.body.footer) if isinstance(new.body, cst.IndentedBlock) else []
                continue
            if carry:
                new = new.with_changes(leading_lines=_merge(carry, new))
                carry = []
            out.append(new)
        return out, carry


def _comment(trailing: cst.TrailingWhitespace) -> list[cst.EmptyLine]:
    return [cst.EmptyLine(comment=trailing.comment)] if trailing.comment else []


def _unwrapped(node: cst.With) -> tuple[list[cst.BaseStatement], list[cst.EmptyLine]]:
    """The statements of a ``with`` block, and the comments of its header."""
    lines = list(node.leading_lines)
    body = node.body
    if isinstance(body, cst.IndentedBlock):
        return list(body.body), lines + _comment(body.header)
    assert isinstance(body, cst.SimpleStatementSuite)
    return [cst.SimpleStatementLine(list(body.body), trailing_whitespace=body.trailing_whitespace)
            ], lines


def _merge(carry: list[cst.EmptyLine], statement: Any) -> list[cst.EmptyLine]:
    """Carried lines before a statement's own, blank runs no longer than either had."""
    lines = [*carry, *statement.leading_lines]
    longest = max(_blank_run(carry), _blank_run(list(statement.leading_lines)))
    out: list[cst.EmptyLine] = []
    run = 0
    for line in lines:
        run = run + 1 if line.comment is None else 0
        if run <= longest:
            out.append(line)
    return out


def _blank_run(lines: list[cst.EmptyLine]) -> int:
    longest = run = 0
    for line in lines:
        run = run + 1 if line.comment is None else 0
        longest = max(longest, run)
    return longest


def _insert_after_import(module: cst.Module, statements: list[cst.BaseStatement],
                         prefix: str) -> cst.Module | None:
    """``statements`` after the first module-level import of ``prefix``; None if none."""
    for index, statement in enumerate(module.body):
        if names.imports_module(statement, prefix):
            body = [*module.body[: index + 1], *statements, *module.body[index + 1:]]
            return module.with_changes(body=body)
    return None


def _is_docstring(statement: cst.BaseStatement) -> bool:
    return (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Expr)
            and isinstance(statement.body[0].value, cst.BaseString))


def _add_imports(module: cst.Module, ctx: Context, plan: SessionPlan) -> cst.Module:
    """``import xent`` for xent calls; eager execution disabled for graph code, only in a
    module that opens a Session itself (never in a library module that merely builds
    graph code: the switch is process-wide)."""
    added: list[cst.BaseStatement] = []
    if ctx.uses_xent and ctx.xent_name == "xent" and "xent" not in names.module_aliases(
        module, "xent"
    ):
        added.append(cst.parse_statement("import xent\n"))
    needs_graph = bool(plan.blockers) and bool(plan.opens_session) and not plan.graph_ready
    if needs_graph:
        disable = names.spell("tensorflow.compat.v1.disable_eager_execution", ctx.aliases)
        if disable is None:
            ctx.add(plan.blockers[0][0], "manual",
                    "graph code needs tf.compat.v1.disable_eager_execution() in TF2", "review")
        else:
            code = cst.Module(body=[]).code_for_node(disable)
            added.append(cst.parse_statement(f"{code}()\n"))
            ctx.add(plan.opens_session, "graph-code",
                    "tf.compat.v1.disable_eager_execution() added after the import: this "
                    "file opens a Session and its graph code runs on TF2 through "
                    "tf.compat.v1; port it to tf.function by hand")
    elif plan.blockers and ctx.tf1 and not plan.opens_session and not plan.graph_ready:
        ctx.add(plan.blockers[0][0], "graph-code",
                "TF1 graph code in a module that opens no Session: it runs on TF2 only in "
                "a program that disables eager execution itself (no process-wide switch "
                "is added to a module)", "review")
    if needs_graph or ctx.tf1:  # TF2 code using tf.compat.v1 on purpose is not reported
        for line, reason in plan.blockers:
            ctx.add(line, "graph-code", f"{reason}: kept as TF1 graph code", "review")
    if not added:
        return module
    new = _insert_after_import(module, added, "tensorflow")
    if new is not None:
        return new
    index = 0  # after the docstring and __future__ imports
    while index < len(module.body) and (
        _is_docstring(module.body[index]) or names.imports_module(module.body[index],
                                                                  "__future__")):
        index += 1
    return module.with_changes(body=[*module.body[:index], *added, *module.body[index:]])


def migrate_module(module: cst.Module, target: str, *, rewrite: bool = True,
                   check: bool = True) -> tuple[cst.Module, list[Finding]]:
    """``module`` rewritten for ``target`` ("tf2" or "xent"), and the findings.

    ``rewrite=False`` / ``check=False`` skip the rewrite / the lint (for source that
    cannot contain what they look for)."""
    wrapper = cst.MetadataWrapper(module, unsafe_skip_copy=True)
    if not rewrite:
        return module, sorted(lint(wrapper)) if check else []
    tables = load()
    evidence = _Evidence(tables)
    wrapper.visit(evidence)
    plan = plan_sessions(wrapper)
    xent_aliases = names.module_aliases(module, "xent")
    xent_name = next((n for n, m in xent_aliases.items() if m == "xent"), "xent")

    def rewritten(keep_v2: bool) -> tuple[cst.Module, Context]:
        ctx = Context(target=target, aliases=names.module_aliases(module), tf1=evidence.tf1,
                      eager=plan.eager, xent_name=xent_name, tables=tables,
                      loss_collection=evidence.loss_collection, keep_v2=keep_v2)
        return _add_imports(wrapper.visit(Rewriter(ctx, plan)), ctx, plan), ctx

    new, ctx = rewritten(keep_v2=False)
    if ctx.plain_v2 and evidence.tf1 and _still_tf1(new, tables):
        new, ctx = rewritten(keep_v2=True)  # or a second run would read it as TF1's
    findings = ctx.findings + (lint(wrapper) if check else [])
    return new, sorted(set(findings), key=lambda f: (f.line, f.kind != "change", f.rule, f.note))


def _still_tf1(module: cst.Module, tables: Tables) -> bool:
    """Whether rewritten code still shows TF1-only code (what a second run would see)."""
    evidence = _Evidence(tables)
    cst.MetadataWrapper(module).visit(evidence)
    return evidence.tf1
