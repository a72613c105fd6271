"""What a ``sess.run`` fetch is, read from the source: a tensor, a structure of tensors, or
something the tool cannot prove to be either.

A fetch can become eager code (``t.numpy()``) only when it is provably a tensor: an
expression built from TensorFlow functions known to return one tensor (``tf.matmul``,
``tf.nn.softmax``, ...), operators and subscripts on such tensors, and names assigned
such an expression exactly once in their scope. Operations (``tf.group``, a train op, an
initializer), ``tf.Variable``, iterators, queues and anything the tool does not know are
*unknown*: the Session code that fetches them stays graph code.

Eager code computes a tensor once, where it is defined; TF1 computed it anew at every
``sess.run``. Both agree for deterministic, stateless ops. A TensorFlow random op, or an
expression the tool cannot see into (a helper function may build one), is a *source*
whose value may change between runs: fetching what depends on one from more than one
place (or from a loop or a function) keeps the file graph code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import libcst as cst
from libcst.metadata import Assignment, ParentNodeProvider, ScopeProvider

from xent.migration import names
from xent.migration.arguments import source_text
from xent.migration.upgrade_tables import load

_T = TypeVar("_T")

#: TensorFlow functions (paths after ``tf.``, any namespace) that return one tensor and
#: hold no state
PURE = frozenset({
    "constant", "convert_to_tensor", "identity", "stop_gradient", "cast", "to_float",
    "to_int32", "to_int64", "to_double", "add", "subtract", "multiply", "divide", "truediv",
    "floordiv", "mod", "div", "mul", "sub", "neg", "negative", "add_n", "scalar_mul",
    "matmul", "tensordot", "einsum", "reshape", "transpose", "concat", "stack", "squeeze",
    "expand_dims", "tile", "pad", "slice", "strided_slice", "gather", "gather_nd", "reverse",
    "one_hot", "argmax", "argmin", "equal", "not_equal", "greater", "greater_equal", "less",
    "less_equal", "logical_and", "logical_or", "logical_not", "where", "zeros", "ones",
    "zeros_like", "ones_like", "fill", "range", "linspace", "eye", "exp", "log", "log1p",
    "sqrt", "rsqrt", "square", "abs", "pow", "maximum", "minimum", "sign", "floor", "ceil",
    "round", "sin", "cos", "tanh", "sigmoid", "clip_by_value", "clip_by_norm", "cumsum",
    "cumprod", "norm", "sort", "shape", "size", "rank", "boolean_mask", "diag", "trace",
    "matrix_transpose", "matrix_inverse", "matrix_determinant", "reduce_sum", "reduce_mean",
    "reduce_max", "reduce_min", "reduce_prod", "reduce_logsumexp", "reduce_all",
    "reduce_any", "count_nonzero",
    "nn.softmax", "nn.log_softmax", "nn.relu", "nn.relu6", "nn.elu", "nn.selu",
    "nn.leaky_relu", "nn.sigmoid", "nn.tanh", "nn.softplus", "nn.softsign", "nn.bias_add",
    "nn.l2_loss", "nn.l2_normalize", "nn.xw_plus_b", "nn.conv1d", "nn.conv2d",
    "nn.max_pool", "nn.avg_pool", "nn.embedding_lookup", "nn.in_top_k",
    "nn.softmax_cross_entropy_with_logits", "nn.softmax_cross_entropy_with_logits_v2",
    "nn.sparse_softmax_cross_entropy_with_logits", "nn.sigmoid_cross_entropy_with_logits",
    "nn.weighted_cross_entropy_with_logits", "nn.log_poisson_loss",
    "losses.softmax_cross_entropy", "losses.sparse_softmax_cross_entropy",
    "linalg.matmul", "linalg.inv", "linalg.det", "linalg.trace", "linalg.norm",
    "linalg.diag", "linalg.transpose", "linalg.matvec",
})
#: module prefixes all of whose functions are pure elementwise or reducing math
_PURE_MODULES = ("math.",)
_NOT_PURE = frozenset({"math.top_k", "math.bincount"})  # tuples, or not a plain tensor
#: random ops: a tensor, drawn anew at every run in TF1
RANDOM = frozenset({
    "random_normal", "random_uniform", "truncated_normal", "random_shuffle", "random_crop",
    "random_gamma", "random_poisson", "multinomial", "nn.dropout",
})


@dataclass
class Fetch:
    """What a fetch expression is."""

    #: "tensor", "structure" (list / tuple / dict of tensors, possibly through a name) or
    #: "unknown"
    kind: str
    #: nodes whose value may differ between runs (random ops, expressions not seen into)
    sources: set[cst.CSTNode] = field(default_factory=set)
    #: why it is unknown
    reason: str = ""


def _pure(path: str) -> bool:
    """A function returning one tensor, holding no state: listed here, in ``tf.math``,
    or a TF1 name TensorFlow's tables rename to a ``tf.math`` function."""
    if path in PURE:
        return True
    target = load().renames.get(path, path)
    return target.startswith(_PURE_MODULES) and target not in _NOT_PURE


def is_random(path: str) -> bool:
    return path in RANDOM or path.startswith(("random.", "random_", "image.random_"))


class FetchReader:
    """Classify expressions of one module (a visitor with scope and name metadata)."""

    def __init__(self, visitor: cst.MetadataDependent) -> None:
        self.visitor = visitor
        self._resolving: set[cst.Name] = set()  # names being followed (no cycles)

    def read(self, node: cst.BaseExpression) -> Fetch:
        """The fetch ``node`` is; names are followed to their single assignment."""
        if isinstance(node, (cst.List, cst.Tuple)):
            parts = [self.read(e.value) if isinstance(e, cst.Element) else
                     Fetch("unknown", reason="a starred element") for e in node.elements]
            return _structure(parts)
        if isinstance(node, cst.Dict):
            parts = [self.read(e.value) if isinstance(e, cst.DictElement) else
                     Fetch("unknown", reason="a ** element") for e in node.elements]
            return _structure(parts)
        if isinstance(node, cst.Name):
            found = self._through(node, self.read)
            if found is not None and found.kind != "unknown":
                return found
        else:
            tensor = self._tensor(node)
            if tensor is not None:
                return tensor
        return Fetch("unknown", reason=f"`{source_text(node)}` is not provably a tensor")

    def _through(self, name: cst.Name, read: Callable[[cst.BaseExpression], _T]
                 ) -> _T | None:
        """``read`` of the value ``name`` was assigned, or None."""
        if name in self._resolving:
            return None
        value = self._assigned(name)
        if value is None:
            return None
        self._resolving.add(name)
        try:
            return read(value)
        finally:
            self._resolving.discard(name)

    def _tensor(self, node: cst.BaseExpression) -> Fetch | None:
        """A Fetch of kind tensor, or None."""
        if isinstance(node, cst.Call):
            api = names.tf_api(names.qualified(self.visitor, node.func))
            if api is None:
                return None
            path = api[1]
            random = is_random(path)
            if not (random or _pure(path)):
                return None
            sources: set[cst.CSTNode] = {node} if random else set()
            for arg in node.args:
                sources |= self._sources(arg.value)
            return Fetch("tensor", sources)
        if isinstance(node, cst.BinaryOperation):
            left, right = self._tensor(node.left), self._tensor(node.right)
            if left is None and right is None:
                return None
            sources = set()
            for side, found in ((node.left, left), (node.right, right)):
                sources |= found.sources if found is not None else self._sources(side)
            return Fetch("tensor", sources)
        if isinstance(node, cst.UnaryOperation) and not isinstance(node.operator, cst.Not):
            return self._tensor(node.expression)
        if isinstance(node, cst.Subscript):
            inner = self._tensor(node.value)
            if inner is None:
                return None
            for element in node.slice:
                inner.sources |= self._sources(element.slice)
            return inner
        if isinstance(node, cst.Name):
            found = self._through(node, self._tensor)
            return found if isinstance(found, Fetch) else None
        return None

    def _sources(self, node: cst.CSTNode) -> set[cst.CSTNode]:
        """What in an argument may change between runs: TF random ops, and expressions
        the tool does not see into (numbers, strings, ``tf.float32`` and NumPy calls are
        computed once, by Python, in TF1 and eager code alike)."""
        if _literal(node) or (isinstance(node, cst.Name)
                              and node.value in ("None", "True", "False")):
            return set()
        if isinstance(node, (cst.List, cst.Tuple)):
            out: set[cst.CSTNode] = set()
            for e in node.elements:
                out |= self._sources(e.value)
            return out
        if isinstance(node, cst.UnaryOperation):
            return self._sources(node.expression)
        if isinstance(node, cst.Attribute) and names.dotted(node) is not None:
            qualified = names.qualified(self.visitor, node) or ""
            if qualified.startswith(("tensorflow.", "numpy.")):
                return set()  # tf.float32, np.pi
        if isinstance(node, cst.Call):
            qualified = names.qualified(self.visitor, node.func) or ""
            if qualified.startswith("numpy."):
                out = set()
                for arg in node.args:
                    out |= self._sources(arg.value)
                return out
        if isinstance(node, cst.BaseExpression) and not isinstance(node, cst.Name):
            tensor = self._tensor(node)
            if tensor is not None:
                return tensor.sources
        if isinstance(node, cst.Name):
            found = self._through(node, self._sources)
            if found is not None:
                return found
        return {node}

    def _assigned(self, name: cst.Name) -> cst.BaseExpression | None:
        """The value of the one ``name = value`` that binds ``name`` where it is read,
        if the value is not changed in place afterwards."""
        scope = self.visitor.get_metadata(ScopeProvider, name, None)
        if scope is None:
            return None
        assignments = list(scope[name.value])
        if len(assignments) != 1 or not isinstance(assignments[0], Assignment):
            return None
        target = assignments[0].node
        holder = self.visitor.get_metadata(ParentNodeProvider, target, None)
        statement = (self.visitor.get_metadata(ParentNodeProvider, holder, None)
                     if holder is not None else None)
        if not (isinstance(holder, cst.AssignTarget) and holder.target is target
                and isinstance(statement, cst.Assign) and len(statement.targets) == 1):
            return None
        for access in assignments[0].references:
            parent = self.visitor.get_metadata(ParentNodeProvider, access.node, None)
            if isinstance(parent, cst.Attribute) and parent.value is access.node and (
                    parent.attr.value not in _READS):
                return None  # fetches.append(t), t.op, ...
            if isinstance(parent, cst.Subscript) and parent.value is access.node:
                holder = self.visitor.get_metadata(ParentNodeProvider, parent, None)
                if isinstance(holder, (cst.AssignTarget, cst.AugAssign, cst.Del)):
                    return None  # fetches[0] = t
        return statement.value


#: attributes of a tensor that read it without changing it
_READS = frozenset({"numpy", "eval", "shape", "dtype", "name", "get_shape", "ndim"})


def _literal(node: cst.CSTNode) -> bool:
    if isinstance(node, (cst.BaseNumber, cst.BaseString)):
        return True
    if isinstance(node, (cst.List, cst.Tuple)):
        return all(isinstance(e, cst.Element) and _literal(e.value) for e in node.elements)
    if isinstance(node, cst.UnaryOperation):
        return _literal(node.expression)
    return False


def _structure(parts: list[Fetch]) -> Fetch:
    sources: set[cst.CSTNode] = set()
    for part in parts:
        if part.kind == "unknown":
            return part
        sources |= part.sources
    return Fetch("structure", sources)
