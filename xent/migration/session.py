"""Session code -> eager code, only where that provably computes the same thing.

TF2 runs eagerly: ``sess = tf.Session()`` and ``with tf.Session() as sess:`` go (the block
is unwrapped), ``sess.run(t)`` and ``t.eval()`` become ``t.numpy()``, lists, tuples and
dicts of fetches keep their structure (``tf.nest.map_structure`` for one held in a
name), ``sess.close()`` goes. The file's Session code becomes eager code only when every
use of every session is one of those, every fetch is provably a tensor or a structure of
tensors (:mod:`xent.migration.fetches`), no random or opaque value is fetched more than
once (TF1 computed it anew at every run, eager code computes it once), and the file
builds no graph-only state (placeholders, ``feed_dict``, initialisers, optimizers, queue
runners, readers, iterators, collections). Otherwise :attr:`SessionPlan.blockers` says
why, line by line, and the Session code stays TF1 graph code through ``tf.compat.v1``.

Code written against ``tensorflow.compat.v1`` already runs on TF2 as it is: its Sessions
are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import (
    ParentNodeProvider,
    PositionProvider,
    QualifiedNameProvider,
    ScopeProvider,
)

from xent.migration import names
from xent.migration.arguments import source_text
from xent.migration.fetches import FetchReader
from xent.migration.mapping import GRAPH_ONLY

_SESSIONS = frozenset({"Session", "InteractiveSession"})
#: constructors that open a session (a module with none of them never gets a
#: process-wide switch)
OPENS_SESSION = _SESSIONS | {"train.MonitoredTrainingSession", "train.MonitoredSession",
                             "train.SingularMonitoredSession"}
#: methods of input pipelines that only work in graph code through a Session
_PIPELINE_METHODS = frozenset({"make_one_shot_iterator", "make_initializable_iterator",
                               "get_next", "dequeue", "dequeue_many", "enqueue",
                               "enqueue_many"})
_LOOPS = (cst.For, cst.While, cst.FunctionDef, cst.Lambda, cst.ListComp, cst.SetComp,
          cst.DictComp, cst.GeneratorExp)


@dataclass
class SessionPlan:
    """Where a file's Session code is, and whether it can become eager code."""

    #: ``NAME = tf.Session()`` and ``sess.close()`` statements (small statements) to drop
    remove: set[cst.BaseSmallStatement] = field(default_factory=set)
    #: ``with tf.Session() as sess:`` statements to unwrap
    unwrap: set[cst.With] = field(default_factory=set)
    #: ``sess.run(fetch)`` / ``t.eval()`` calls -> how to convert their fetch: "tensor",
    #: "literal" (a list / tuple / dict written in the call) or "structure" (held in a name)
    runs: dict[cst.Call, str] = field(default_factory=dict)
    #: (line, reason) of everything that keeps Session code as graph code
    blockers: list[tuple[int, str]] = field(default_factory=list)
    #: the file already disables eager execution, or builds its own tf.Graph
    graph_ready: bool = False
    #: the file uses graph-only API (placeholders, initialisers, optimizers, ...)
    graph_api: bool = False
    #: the file opens a Session through plain ``tensorflow`` (line), or 0
    opens_session: int = 0
    #: the file's sessions are ``tf.compat.v1`` ones: code that already runs on TF2
    targets_v1: bool = False

    @property
    def has_sessions(self) -> bool:
        return bool(self.remove or self.unwrap or self.runs)

    @property
    def eager(self) -> bool:
        return not self.blockers and not self.targets_v1 and self.has_sessions


class _Base(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (ParentNodeProvider, PositionProvider, QualifiedNameProvider,
                             ScopeProvider)

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
        self.evals: list[cst.Call] = []

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
        elif isinstance(node.func, cst.Attribute) and names.qualified(self, node.func) is None:
            method = node.func.attr.value
            if method == "eval":
                self.evals.append(node)
            elif method in _PIPELINE_METHODS:
                self.block(node, f"`.{method}()` is an input pipeline read through a Session")

    def _name(self, node: cst.BaseExpression) -> None:
        api = names.tf_api(names.qualified(self, node))
        if api is None or api[0] == "v2":
            return
        namespace, path = api
        if path in ("Graph", "disable_eager_execution", "disable_v2_behavior"):
            self.plan.graph_ready = True
        if path in OPENS_SESSION and namespace == "tf" and not self.plan.opens_session:
            self.plan.opens_session = self.line(node)
        if path in _SESSIONS and namespace == "v1":
            self.plan.targets_v1 = True
        elif path in GRAPH_ONLY:
            self.plan.graph_api = True
            self.block(node, f"tf.{path} is graph-mode API")
        elif path in _SESSIONS:
            self._session(node, path)
        elif path in OPENS_SESSION:
            self.block(node, f"tf.{path} runs graph code")

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
            if isinstance(run, cst.Call) and _one_fetch(run):
                self.plan.runs[run] = ""
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
                if _one_fetch(grand):
                    self.plan.runs[grand] = ""
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


class _Fetches(_Base):
    """Each fetch (``sess.run(x)``, ``x.eval()``) must be a tensor or a structure of
    tensors, and no value that may change between runs may be fetched twice."""

    def __init__(self, plan: SessionPlan, evals: list[cst.Call]) -> None:
        super().__init__(plan)
        self.evals = evals

    def visit_Module(self, node: cst.Module) -> bool:
        reader = FetchReader(self)
        fetched: dict[cst.CSTNode, list[int]] = {}
        sites = [(run, run.args[0].value) for run in self.plan.runs]
        for call in self.evals:
            assert isinstance(call.func, cst.Attribute)
            if call.args:
                self.block(call, f"`{source_text(call)}`: eval with arguments")
            else:
                sites.append((call, call.func.value))
        for call, value in sites:
            fetch = reader.read(value)
            if fetch.kind == "unknown":
                self.block(call, f"`{source_text(call)}`: {fetch.reason}; operations and "
                                 "other values have no eager .numpy()")
                continue
            if fetch.kind == "structure":
                self.plan.runs[call] = ("literal" if isinstance(
                    value, (cst.List, cst.Tuple, cst.Dict)) else "structure")
            else:
                self.plan.runs[call] = "tensor"
            weight = 2 if self._repeated(call) else 1
            for source in fetch.sources:
                fetched.setdefault(source, []).append(weight)
        for source, weights in fetched.items():
            if sum(weights) > 1:
                self.block(source, f"`{source_text(source)}` may change between runs (a "
                           "random op, or a value the tool cannot see into) and is fetched "
                           "more than once: TF1 computed it anew each run, eager code once")
        return False

    def _repeated(self, node: cst.CSTNode) -> bool:
        """Inside a loop, a function or a comprehension: may run more than once."""
        parent = self.parent(node)
        while parent is not None:
            if isinstance(parent, _LOOPS):
                return True
            parent = self.parent(parent)
        return False


def _one_fetch(run: cst.Call) -> bool:
    """``sess.run(fetch)``: one positional fetch, no feed_dict or options."""
    return len(run.args) == 1 and run.args[0].keyword is None and not run.args[0].star


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
    if plan.has_sessions and not plan.targets_v1:  # every reason is reported
        wrapper.visit(_Fetches(plan, found.evals))
    return plan
