"""Lint: ``log(softmax(x))`` in TensorFlow, PyTorch, NumPy and JAX code.

The log of a softmax is ``-inf`` wherever a probability underflows (a logit ~100 below the
row's maximum in float32) and loses digits long before; ``log_softmax`` (or a fused
cross-entropy) computes the same thing as ``x - logsumexp(x)`` without the round trip.
Found nested (``tf.log(tf.nn.softmax(x))``, ``torch.softmax(x, 1).log()``,
``np.log(np.exp(x) / np.exp(x).sum())``) or through a name assigned once in the same scope
(``p = F.softmax(x, 1)`` ... ``torch.log(p)``). Only reported, never rewritten.
"""

from __future__ import annotations

import libcst as cst
from libcst.metadata import (
    Assignment,
    ParentNodeProvider,
    PositionProvider,
    QualifiedNameProvider,
    ScopeProvider,
)

from xent.migration import names
from xent.migration.arguments import source_text
from xent.migration.report import Finding

#: log functions, by qualified name
LOGS = frozenset({
    "numpy.log", "torch.log", "jax.numpy.log", "tensorflow.log", "tensorflow.math.log",
    "tensorflow.compat.v1.log", "tensorflow.compat.v1.math.log",
    "tensorflow.compat.v2.math.log", "tensorflow.experimental.numpy.log",
})

#: framework (qualified-name root) -> the fused call to suggest
FUSED = {
    "tensorflow": "tf.nn.log_softmax({x})",
    "torch": "torch.log_softmax({x}, dim)",
    "jax": "jax.nn.log_softmax({x})",
    "numpy": "scipy.special.log_softmax({x})",
    "scipy": "scipy.special.log_softmax({x})",
}


class LogSoftmaxLint(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (ParentNodeProvider, PositionProvider, QualifiedNameProvider,
                             ScopeProvider)

    def __init__(self) -> None:
        super().__init__()
        self.findings: list[Finding] = []

    def visit_Call(self, node: cst.Call) -> None:
        log_name = names.qualified(self, node.func)
        if log_name in LOGS and node.args and node.args[0].keyword is None:
            argument = node.args[0].value
        elif (isinstance(node.func, cst.Attribute) and node.func.attr.value == "log"
              and not node.args):
            argument, log_name = node.func.value, None  # torch: p.log()
        else:
            return
        found = self._softmax_of(argument) or _handwritten(argument)
        via = ""
        if found is None and isinstance(argument, cst.Name):
            found = self._assigned_softmax(argument)
            via = f" (through `{argument.value}`)"
        if found is None:
            return
        softmax, x = found
        framework = (log_name or names.qualified(self, softmax.func) or "").split(".")[0]
        fused = FUSED.get(framework, "xent.log_softmax({x})").format(x=source_text(x, 30))
        note = f"log(softmax({source_text(x, 30)})){via}: use {fused}"
        if framework in FUSED:
            note += f" or xent.log_softmax({source_text(x, 30)})"
        if isinstance(self.get_metadata(ParentNodeProvider, node, None), cst.BinaryOperation):
            note += ("; -sum(labels * log(softmax(logits))) is "
                     "softmax_cross_entropy_with_logits(labels=..., logits=...)")
        line = self.get_metadata(PositionProvider, node).start.line
        self.findings.append(Finding(line, "log-softmax", note, "lint"))

    def _softmax_of(self, node: cst.BaseExpression) -> tuple[cst.Call, cst.BaseExpression] | None:
        """(the softmax call, its input) when ``node`` computes a softmax."""
        if not isinstance(node, cst.Call):
            return None
        if _last_name(node.func) != "softmax":
            return None
        func = node.func
        if isinstance(func, cst.Attribute) and names.qualified(self, func) is None and not (
            isinstance(func.value, cst.Name) and func.value.value == "self"
        ):
            return node, func.value  # x.softmax(dim): a tensor method
        if node.args and node.args[0].keyword is None:
            return node, node.args[0].value
        return None

    def _assigned_softmax(self, name: cst.Name) -> tuple[cst.Call, cst.BaseExpression] | None:
        scope = self.get_metadata(ScopeProvider, name, None)
        if scope is None:
            return None
        assignments = list(scope.assignments[name.value])
        if len(assignments) != 1 or not isinstance(assignments[0], Assignment):
            return None
        target = assignments[0].node
        holder = self.get_metadata(ParentNodeProvider, target, None)
        assign = self.get_metadata(ParentNodeProvider, holder, None) if holder else None
        if isinstance(holder, cst.AssignTarget) and isinstance(assign, cst.Assign) and len(
            assign.targets
        ) == 1 and holder.target is target:
            return self._softmax_of(assign.value) or _handwritten(assign.value)
        if isinstance(holder, cst.AnnAssign) and holder.target is target and holder.value:
            return self._softmax_of(holder.value) or _handwritten(holder.value)
        return None


def _handwritten(node: cst.BaseExpression) -> tuple[cst.Call, cst.BaseExpression] | None:
    """``exp(x) / sum(exp(x))`` (also ``exp(x) / exp(x).sum(...)``): (the exp call, x)."""
    if not (isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Divide)):
        return None
    top = node.left
    if not (isinstance(top, cst.Call) and _last_name(top.func) == "exp" and top.args):
        return None
    bottom = node.right
    if isinstance(bottom, cst.Call) and _last_name(bottom.func) in ("sum", "reduce_sum"):
        inner = bottom.func.value if (
            isinstance(bottom.func, cst.Attribute) and isinstance(bottom.func.value, cst.Call)
        ) else (bottom.args[0].value if bottom.args else None)
        if isinstance(inner, cst.Call) and _last_name(inner.func) == "exp":
            return top, top.args[0].value
    return None


def _last_name(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    return None


def lint(wrapper: cst.MetadataWrapper) -> list[Finding]:
    """The ``log-softmax`` findings of a module."""
    visitor = LogSoftmaxLint()
    wrapper.visit(visitor)
    return visitor.findings
