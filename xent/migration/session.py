"""Session code -> eager code: which parts of a file can go, and what blocks it.

TF2 runs eagerly, so the common TF1 patterns have a mechanical translation:
``sess = tf.Session()`` and ``with tf.Session() as sess:`` go (the block is unwrapped),
``sess.run(t)`` becomes ``t.numpy()`` (lists, tuples and dicts of fetches too) and
``sess.close()`` goes. That is only right when every use of every session in the file is
one of those and the file builds no graph-only state (placeholders, ``feed_dict``,
variable initialisers, optimizers, collections): then :attr:`SessionPlan.eager` is true.
Otherwise the file's Session code stays TF1 graph code, kept runnable through
``tf.compat.v1`` with eager execution disabled, and each obstacle is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import ParentNodeProvider, PositionProvider, QualifiedNameProvider

from xent.migration import names
from xent.migration.arguments import source_text
from xent.migration.mapping import GRAPH_ONLY

_SESSIONS = frozenset({"Session", "InteractiveSession"})


@dataclass
class SessionPlan:
    """Where a file's Session code is, and whether it can become eager code."""

    #: ``NAME = tf.Session()`` and ``sess.close()`` statements (small statements) to drop
    remove: set[cst.BaseSmallStatement] = field(default_factory=set)
    #: ``with tf.Session() as sess:`` statements to unwrap
    unwrap: set[cst.With] = field(default_factory=set)
    #: ``sess.run(fetch)`` calls to replace by the fetch's ``.numpy()``
    runs: set[cst.Call] = field(default_factory=set)
    #: ``t.eval()`` calls (the default session's run) to replace by ``t.numpy()``
    evals: set[cst.Call] = field(default_factory=set)
    #: (line, reason) of everything that keeps Session code as graph code
    blockers: list[tuple[int, str]] = field(default_factory=list)
    #: the file already disables eager execution, or builds its own tf.Graph
    graph_ready: bool = False
    #: the file uses graph-only API (placeholders, initialisers, optimizers, ...)
    graph_api: bool = False

    @property
    def has_sessions(self) -> bool:
        return bool(self.remove or self.unwrap or self.runs)

    def eval_calls(self) -> set[cst.Call]:
        """``t.eval()`` calls to convert: only in files whose sessions go eager."""
        return self.evals if self.has_sessions and self.eager else set()

    @property
    def eager(self) -> bool:
        return not self.blockers


class _Base(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (ParentNodeProvider, PositionProvider, QualifiedNameProvider)

    def __init__(self, plan: SessionPlan) -> None:
        super().__init__()
        self.plan = plan

    def line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.get_metadata(ParentNodeProvider, node, None)

    def block(self, node: cst.CSTNode, reason: str) -> None:
        self.plan.blockers.append((self.line(node), reason))


class _Sessions(_Base):
    """Session constructors and graph-only names."""

    def __init__(self, plan: SessionPlan) -> None:
        super().__init__(plan)
        self.session_names: set[str] = set()
        self.creations: set[cst.CSTNode] = set()  # Assign / WithItem nodes

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self._name(node)
        return True

    def visit_Name(self, node: cst.Name) -> None:
        parent = self.parent(node)
        if not (isinstance(parent, cst.Attribute) and parent.attr is node):
            self._name(node)

    def visit_Call(self, node: cst.Call) -> None:
        if any(a.keyword is not None and a.keyword.value == "feed_dict" for a in node.args):
            self.block(node, "feed_dict= feeds placeholders")
        elif (not node.args and isinstance(node.func, cst.Attribute)
              and node.func.attr.value == "eval"):
            self.plan.evals.add(node)

    def _name(self, node: cst.BaseExpression) -> None:
        api = names.tf_api(names.qualified(self, node))
        if api is None or api[0] == "v2":
            return
        path = api[1]
        if path in ("Graph", "disable_eager_execution", "disable_v2_behavior"):
            self.plan.graph_ready = True
        if path in GRAPH_ONLY:
            self.plan.graph_api = True
            self.block(node, f"tf.{path} is graph-mode API")
        elif path in _SESSIONS:
            self._session(node, path)

    def _session(self, node: cst.BaseExpression, path: str) -> None:
        call = self.parent(node)
        if not isinstance(call, cst.Call) or call.func is not node:
            self.block(node, f"tf.{path} used other than as `sess = tf.{path}()`")
            return
        if call.args:
            self.block(call, f"`{source_text(call)}` has arguments (a graph or a config)")
            return
        holder = self.parent(call)
        if isinstance(holder, cst.Assign) and len(holder.targets) == 1 and isinstance(
            holder.targets[0].target, cst.Name
        ):
            self.session_names.add(holder.targets[0].target.value)
            self.creations.add(holder)
            self.plan.remove.add(holder)
        elif isinstance(holder, cst.WithItem) and isinstance(holder.asname, cst.AsName) and (
            isinstance(holder.asname.name, cst.Name)
        ):
            with_node = self.parent(holder)
            if isinstance(with_node, cst.With) and len(with_node.items) == 1 and (
                with_node.asynchronous is None
            ):
                self.session_names.add(holder.asname.name.value)
                self.creations.add(holder)
                self.plan.unwrap.add(with_node)
            else:
                self.block(call, f"tf.{path}() in a `with` of several items")
        elif isinstance(holder, cst.Attribute) and holder.attr.value == "run":
            run = self.parent(holder)
            if isinstance(run, cst.Call) and _run_ok(run):
                self.plan.runs.add(run)
            else:
                self.block(call, f"`{source_text(run or holder)}` cannot become eager code")
        else:
            self.block(call, f"tf.{path}() used other than as `sess = tf.{path}()`")


class _SessionUses(_Base):
    """Every use of a session name must be ``.run(fetch)`` or ``.close()``."""

    def __init__(self, plan: SessionPlan, found: _Sessions) -> None:
        super().__init__(plan)
        self.found = found

    def visit_Name(self, node: cst.Name) -> None:
        if node.value not in self.found.session_names:
            return
        parent = self.parent(node)
        if isinstance(parent, cst.Attribute) and parent.attr is node:
            return  # `x.sess` is an attribute, not the name
        grand = self.parent(parent) if parent is not None else None
        if isinstance(parent, cst.AssignTarget) and grand in self.found.creations:
            return
        if isinstance(parent, cst.AsName) and grand in self.found.creations:
            return
        if isinstance(parent, cst.Attribute) and parent.value is node and isinstance(
            grand, cst.Call
        ) and grand.func is parent:
            if parent.attr.value == "run":
                if _run_ok(grand):
                    self.plan.runs.add(grand)
                elif not any(a.keyword and a.keyword.value == "feed_dict" for a in grand.args):
                    self.block(grand, f"`{source_text(grand)}` cannot become eager code")
                return
            statement = self.parent(grand)
            if parent.attr.value == "close" and not grand.args and isinstance(
                statement, cst.Expr
            ):
                self.plan.remove.add(statement)
                return
        if isinstance(parent, cst.AssignTarget):
            self.block(node, f"`{node.value}` is also assigned something else than a Session")
            return
        self.block(node, f"`{node.value}` is used as "
                         f"`{source_text(parent if parent is not None else node)}`")


def _run_ok(run: cst.Call) -> bool:
    """``sess.run(fetch)``: one positional fetch, no feed_dict or options."""
    return (len(run.args) == 1 and run.args[0].keyword is None and not run.args[0].star
            and fetch_ok(run.args[0].value))


def fetch_ok(node: cst.BaseExpression) -> bool:
    """A fetch made of tensors (not of graph element names given as strings)."""
    if isinstance(node, (cst.List, cst.Tuple)):
        return all(isinstance(e, cst.Element) and fetch_ok(e.value) for e in node.elements)
    if isinstance(node, cst.Dict):
        return all(isinstance(e, cst.DictElement) and fetch_ok(e.value)
                   for e in node.elements)
    return not isinstance(node, (cst.BaseString, cst.Integer, cst.Float, cst.Imaginary,
                                 cst.Lambda, cst.Ellipsis))


def as_numpy(node: cst.BaseExpression) -> cst.BaseExpression:
    """The eager value of a fetch: ``t`` -> ``t.numpy()``, elementwise in containers."""
    if isinstance(node, (cst.List, cst.Tuple)):
        return node.with_changes(elements=[
            e.with_changes(value=as_numpy(e.value)) if isinstance(e, cst.Element) else e
            for e in node.elements])
    if isinstance(node, cst.Dict):
        return node.with_changes(elements=[
            e.with_changes(value=as_numpy(e.value)) if isinstance(e, cst.DictElement) else e
            for e in node.elements])
    atom = isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) or node.lpar
    inner = node if atom else node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return cst.Call(func=cst.Attribute(value=inner, attr=cst.Name("numpy")))


def plan_sessions(wrapper: cst.MetadataWrapper) -> SessionPlan:
    """Analyse a module's Session code."""
    plan = SessionPlan()
    found = _Sessions(plan)
    wrapper.visit(found)
    if found.session_names:
        wrapper.visit(_SessionUses(plan, found))
    return plan
