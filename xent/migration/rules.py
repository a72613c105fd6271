"""The rewrite rules for TensorFlow calls, one method per family of the mapping.

Each rule takes the call (children already rewritten) and returns its replacement,
recording a :class:`~xent.migration.report.Finding` for every change and for every
change it could not make safely. Which meaning a call has depends on its namespace:
``tf.compat.v1.*`` is TF1, ``tf.compat.v2.*`` is TF2, and plain ``tf.*`` names that
exist in both (``tf.nn.softmax_cross_entropy_with_logits``) are read as TF1 when the file
shows TF1 code elsewhere (:attr:`Context.tf1`), else as TF2 and only reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
from libcst.helpers import parse_template_expression

from xent.migration import names
from xent.migration.arguments import (
    arranged,
    bind,
    is_constant,
    is_literal_none,
    positional_count,
    renamed,
    source_text,
)
from xent.migration.mapping import COMPAT_V1
from xent.migration.report import Finding
from xent.migration.upgrade_tables import Tables, gone

CROSS_ENTROPY = {
    "nn.softmax_cross_entropy_with_logits": "dense",
    "nn.softmax_cross_entropy_with_logits_v2": "v2",
    "nn.sparse_softmax_cross_entropy_with_logits": "sparse",
}
SOFTMAX = {"nn.softmax": "softmax", "nn.log_softmax": "log_softmax",
           "math.softmax": "softmax", "math.log_softmax": "log_softmax"}
LOSSES = {"losses.softmax_cross_entropy": "dense",
          "losses.sparse_softmax_cross_entropy": "sparse"}
REDUCE = frozenset(
    f"{prefix}reduce_{op}" for prefix in ("", "math.")
    for op in ("sum", "mean", "max", "min", "prod", "all", "any", "logsumexp")
)
RENAMES = {"log": "math.log",
           # TensorFlow < 1.0 aliases of the same functions (TF 0.12 deprecated them)
           "mul": "math.multiply", "sub": "math.subtract", "neg": "math.negative"}
#: keyword renames of TF1 functions, checked against the signature's positional slots
_REDUCE_KEYWORDS = {"reduction_indices": ("axis", 1, "reduction-indices"),
                    "keep_dims": ("keepdims", 2, "keep-dims")}
_ITERATORS = frozenset({"make_one_shot_iterator", "make_initializable_iterator"})
_XENT_NAME = {"dense": "softmax_cross_entropy_with_logits",
              "v2": "softmax_cross_entropy_with_logits",
              "sparse": "sparse_softmax_cross_entropy_with_logits"}


@dataclass
class Context:
    """What the rules know about the file, and what they found."""

    target: str  # "tf2" or "xent"
    aliases: dict[str, str]  # module-level names bound to tensorflow modules
    tf1: bool  # the file shows TF1-only code
    eager: bool  # its Session code becomes eager code
    xent_name: str = "xent"
    #: TensorFlow's own upgrade tables (empty without TensorFlow)
    tables: Tables = field(default_factory=Tables)
    #: the file reads the LOSSES collection (``tf.losses.get_total_loss()``...)
    loss_collection: bool = False
    #: the file keeps TF1 code after the rewrite (``tf.contrib``): ``_v2`` must stay
    #: spelled ``_v2``, or a second run would read the plain name as TF1's
    keep_v2: bool = False
    findings: list[Finding] = field(default_factory=list)
    uses_xent: bool = False
    #: a ``_v2`` name was rewritten to the plain TF2 name
    plain_v2: bool = False

    def add(self, line: int, rule: str, note: str, kind: str = "change") -> None:
        self.findings.append(Finding(line, rule, note, kind))

    def tf(self, namespace: str, path: str, func: cst.CSTNode | None = None,
           qualname: str | None = None) -> cst.BaseExpression | None:
        """Spell ``tensorflow.<path>`` (or the namespace's own) with the file's imports."""
        for target in ("tensorflow." + path, names.in_namespace(namespace, path)):
            expr = names.spell(target, self.aliases, func, qualname)
            if expr is not None:
                return expr
        return None

    def xent(self, function: str) -> cst.BaseExpression:
        self.uses_xent = True
        return cst.parse_expression(f"{self.xent_name}.{function}")


class Rules:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- names --------------------------------------------------------------------------
    def attribute(self, node: cst.Attribute, qualname: str | None, line: int,
                  called: bool) -> cst.BaseExpression:
        """Renames of a TF1-only name, wherever it appears (called or passed around)."""
        api = names.tf_api(qualname)
        if api is None or api[0] != "tf" or qualname is None:
            return node
        path = api[1]
        if path in RENAMES:
            new = names.spell(names.in_namespace("tf", RENAMES[path]), self.ctx.aliases,
                              node, qualname)
            if new is not None:
                self.ctx.add(line, "math-log" if path == "log" else "rename",
                             f"tf.{path} -> tf.{RENAMES[path]}")
                return new
        elif path == "nn.softmax_cross_entropy_with_logits_v2" and not called:
            new = self._plain_v2(node, qualname, "tf", line)
            if new is not None:
                return new
        elif path in ("Session", "InteractiveSession") and self.ctx.eager:
            return node  # the Session goes
        elif called and (path in LOSSES or path in CROSS_ENTROPY):
            return node  # the call rule decides
        elif path in self.ctx.tables.renames:
            return self._renamed(node, qualname, path, self.ctx.tables.renames[path], line)
        elif path in COMPAT_V1 and not self.ctx.tables:
            return self._renamed(node, qualname, path, "compat.v1." + path, line)
        elif self.ctx.tables and gone(path, self.ctx.tables.api) == path:
            self.ctx.add(line, "manual", f"the installed TensorFlow has no tf.{path}, nor "
                         f"tf.compat.v1.{path}: port it by hand", "review")
        return node

    def _renamed(self, node: cst.Attribute, qualname: str, path: str, target: str,
                 line: int) -> cst.BaseExpression:
        new = names.spell(names.in_namespace("tf", target), self.ctx.aliases, node, qualname)
        if new is None:
            return node
        if target.startswith("compat.v1."):
            self.ctx.add(line, "compat-v1",
                         f"tf.{path} is TF1 only: kept runnable as tf.{target}")
        else:
            self.ctx.add(line, "rename", f"tf.{path} -> tf.{target} (the same function)")
        return new

    def _plain_v2(self, func: cst.CSTNode, qualname: str, namespace: str,
                  line: int) -> cst.BaseExpression | None:
        """``..._with_logits_v2`` -> the plain TF2 name (same meaning), or kept as
        ``tf.compat.v1...._v2`` where the file keeps other TF1 code."""
        if self.ctx.keep_v2:
            if namespace == "v1":
                return None
            new = self.ctx.tf("v1", "compat.v1.nn.softmax_cross_entropy_with_logits_v2",
                              func, qualname)
            if new is not None:
                self.ctx.add(line, "v2-suffix", "kept as tf.compat.v1.nn.softmax_cross_"
                             "entropy_with_logits_v2: this file keeps other TF1 code, where "
                             "the plain name would read as TF1's")
            return new
        new = self.ctx.tf(namespace, "nn.softmax_cross_entropy_with_logits", func, qualname)
        if new is not None:
            self.ctx.plain_v2 = True
            self.ctx.add(line, "v2-suffix", "softmax_cross_entropy_with_logits_v2 -> "
                         "softmax_cross_entropy_with_logits (TF2's has _v2's meaning)")
        return new

    # -- calls ----------------------------------------------------------------------------
    def call(self, original: cst.Call, call: cst.Call, qualname: str | None,
             line: int, discarded: bool = False) -> cst.BaseExpression:
        api = names.tf_api(qualname)
        if api is None:
            return self._iterator(call, qualname, line)
        namespace, path = api
        if path in CROSS_ENTROPY:
            return self._cross_entropy(original, call, qualname or "", namespace, path, line)
        if path in SOFTMAX:
            return self._softmax(call, namespace, path, line)
        if path in LOSSES and namespace != "v2":
            return self._losses(original, call, qualname or "", namespace, path, line,
                                discarded)
        if path in REDUCE and namespace == "tf":
            return self._reduce(call, path, line)
        if path in self.ctx.tables.changed and namespace == "tf":
            return self._changed(original, call, qualname or "", path, line)
        return call

    def _iterator(self, call: cst.Call, qualname: str | None,
                  line: int) -> cst.BaseExpression:
        """``dataset.make_one_shot_iterator()``, a method TF2's datasets lack ->
        ``tf.compat.v1.data.make_one_shot_iterator(dataset)``, the same iterator."""
        func = call.func
        if qualname is not None or not isinstance(func, cst.Attribute) or (
                func.attr.value not in _ITERATORS):
            return call
        new = self.ctx.tf("v1", f"compat.v1.data.{func.attr.value}")
        if new is None:
            return call
        self.ctx.add(line, "compat-v1", f".{func.attr.value}() -> tf.compat.v1.data."
                     f"{func.attr.value}(dataset): TF2's datasets have no such method")
        return call.with_changes(func=new, args=[
            cst.Arg(func.value, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            if call.args else cst.Arg(func.value), *call.args])

    def _changed(self, original: cst.Call, call: cst.Call, qualname: str, path: str,
                 line: int) -> cst.BaseExpression:
        """A function whose arguments changed in TF2 (TensorFlow's tables): a call that
        uses a TF1-only keyword, or (in TF1 code) positional or keyword arguments whose
        meaning moved, calls TF1's own function, ``tf.compat.v1.<name>``."""
        keywords = {a.keyword.value for a in call.args if a.keyword is not None}
        prefix = self.ctx.tables.changed[path]
        positional = positional_count(call.args)
        tf1_keywords = keywords & self.ctx.tables.keywords.get(path, frozenset())
        moved = positional > (prefix if prefix is not None else 1) or (
            prefix is None and bool(keywords))
        if not tf1_keywords and not moved:
            return call
        if not tf1_keywords and not self.ctx.tf1:
            self.ctx.add(line, "manual", f"tf.{path}: TF1 and TF2 read these arguments "
                         "differently; if this is TF1 code, call tf.compat.v1."
                         f"{path}", "review")
            return call
        func = names.spell(names.in_namespace("v1", path), self.ctx.aliases, original.func,
                           qualname)
        if func is None:
            return call
        why = (f"TF1-only keyword {', '.join(sorted(tf1_keywords))}" if tf1_keywords
               else "its arguments mean something else in TF2")
        self.ctx.add(line, "compat-v1", f"tf.{path}: {why}: kept as TF1's "
                     f"tf.compat.v1.{path}")
        return call.with_changes(func=func)

    def _cross_entropy(self, original: cst.Call, call: cst.Call, qualname: str,
                       namespace: str, path: str, line: int) -> cst.BaseExpression:
        kind = CROSS_ENTROPY[path]
        to_xent = self.ctx.target == "xent"
        tf1 = namespace == "v1" or (namespace == "tf" and self.ctx.tf1)
        pre_1_0 = False
        # tf.compat.v1 code runs on TF2, whose compat.v1 functions read (labels, logits)
        if positional_count(call.args) and kind != "v2" and namespace == "tf":
            if not tf1:
                self.ctx.add(line, "argument-order",
                             "positional call in a file with no other TF1 code: TF2 reads "
                             "(labels, logits), TensorFlow < 1.0 read (logits, labels); "
                             "name the arguments", "review")
                return call
            pre_1_0 = True
        params = _signature(kind, namespace, pre_1_0)
        bound = bind(call.args, params)
        if bound is None or "labels" not in bound or "logits" not in bound:
            self.ctx.add(line, "manual", f"cannot read the arguments of tf.{path}: "
                         "name labels= and logits= by hand", "review")
            return call
        if "dim" in bound and "axis" in bound:
            self.ctx.add(line, "manual", "both dim= and axis= given", "review")
            return call
        labels = bound["labels"].value
        stop = tf1 and kind == "dense"
        if pre_1_0:
            self.ctx.add(line, "argument-order",
                         "positional call is TensorFlow < 1.0's (logits, labels) order: now "
                         f"labels={source_text(labels)}, logits="
                         f"{source_text(bound['logits'].value)}")
        if namespace == "v1" and not to_xent:
            if not pre_1_0:  # a tf.compat.v1 call runs on TF2 with its TF1 meaning
                return call
            items = [(k, bound[k].value) for k in ("labels", "logits", "dim", "name", "axis")
                     if k in bound]
            return call.with_changes(args=arranged(call.args, items))
        if namespace == "v2" and not to_xent:
            return call
        if stop and not _stopped(labels):
            wrapper = self.ctx.tf(namespace, "stop_gradient", original.func, qualname)
            if wrapper is None:
                self.ctx.add(line, "manual", "wrap labels in tf.stop_gradient to keep TF1's "
                             "semantics (no tensorflow import to spell it with)", "review")
            else:
                labels = cst.Call(func=wrapper, args=[cst.Arg(labels)])
                self.ctx.add(line, "label-gradient",
                             "TF1's softmax_cross_entropy_with_logits lets no gradient into "
                             "labels, TF2's does: labels wrapped in tf.stop_gradient")
        elif (kind == "dense" and namespace == "tf" and not tf1 and not _stopped(labels)
              and not to_xent):
            self.ctx.add(line, "label-gradient",
                         "TF2 lets the gradient into labels; if this is TF1 code whose labels "
                         "depend on trained values, wrap them in tf.stop_gradient", "review")
        if to_xent:
            return self._to_xent(call, bound, labels, kind, line, reduction=None)
        func = call.func
        if kind == "v2":
            plain = self._plain_v2(original.func, qualname, namespace, line)
            if plain is not None:
                func = plain
            elif not self.ctx.keep_v2:
                self.ctx.add(line, "manual", "call tf.nn.softmax_cross_entropy_with_logits "
                             "(TF2 has no _v2)", "review")
        if "dim" in bound:
            self.ctx.add(line, "dim-axis", "dim= -> axis=")
        if pre_1_0:
            items = [("axis" if k == "dim" else k, bound[k].value)
                     for k in ("labels", "logits", "dim", "name") if k in bound]
            items[0] = ("labels", labels)
            return call.with_changes(func=func, args=arranged(call.args, items))
        args = [
            arg.with_changes(value=labels) if arg is bound["labels"]
            else renamed(arg, "axis") if arg is bound.get("dim") else arg
            for arg in call.args
        ]
        return call.with_changes(func=func, args=args)

    def _to_xent(self, call: cst.Call, bound: dict[str, cst.Arg], labels: cst.BaseExpression,
                 kind: str, line: int, reduction: str | None) -> cst.BaseExpression:
        items: list[tuple[str | None, cst.BaseExpression]] = [
            ("labels", labels), ("logits", bound["logits"].value)]
        axis = bound.get("axis") or bound.get("dim")
        if axis is not None and not is_literal_none(axis.value):
            items.append(("axis", axis.value))
        if reduction is not None:
            items.append(("reduction", cst.SimpleString(f'"{reduction}"')))
        function = _XENT_NAME[kind]
        self.ctx.add(line, "to-xent", f"-> xent.{function}"
                     + (f' (reduction="{reduction}")' if reduction else ""))
        return cst.Call(func=self.ctx.xent(function), args=arranged(call.args, items),
                        lpar=call.lpar, rpar=call.rpar)

    def _softmax(self, call: cst.Call, namespace: str, path: str,
                 line: int) -> cst.BaseExpression:
        params = ("logits", "axis", "name") + (("dim",) if namespace != "v2" else ())
        bound = bind(call.args, params)
        if bound is None or "logits" not in bound or ("dim" in bound and "axis" in bound):
            if bound is None or "logits" not in bound:
                return call
            self.ctx.add(line, "manual", "both dim= and axis= given", "review")
            return call
        if self.ctx.target == "xent":
            items: list[tuple[str | None, cst.BaseExpression]] = [(None, bound["logits"].value)]
            axis = bound.get("axis") or bound.get("dim")
            if axis is not None and not is_literal_none(axis.value):
                items.append(("axis", axis.value))
            function = SOFTMAX[path]
            self.ctx.add(line, "to-xent", f"-> xent.{function}")
            return cst.Call(func=self.ctx.xent(function), args=arranged(call.args, items),
                            lpar=call.lpar, rpar=call.rpar)
        if "dim" in bound and namespace == "tf":
            self.ctx.add(line, "dim-axis", "dim= -> axis=")
            return call.with_changes(args=[
                renamed(arg, "axis") if arg is bound["dim"] else arg for arg in call.args])
        return call

    def _losses(self, original: cst.Call, call: cst.Call, qualname: str, namespace: str,
                path: str, line: int, discarded: bool) -> cst.BaseExpression:
        kind = LOSSES[path]
        first = "onehot_labels" if kind == "dense" else "labels"
        params = [first, "logits", "weights"] + (["label_smoothing"] if kind == "dense" else [])
        bound = bind(call.args, params + ["scope", "loss_collection", "reduction"])
        to_xent = self.ctx.target == "xent"
        simple = bound is not None and set(bound) == {first, "logits"}
        collected = discarded or self.ctx.loss_collection
        if not simple or collected or (namespace == "v1" and not to_xent):
            if namespace == "tf":
                func = names.spell(names.in_namespace("v1", path), self.ctx.aliases,
                                   original.func, qualname)
                if func is not None:
                    why = ("its result is discarded: it only adds the loss to the LOSSES "
                           "collection" if discarded else "the file reads the LOSSES "
                           "collection back" if collected else
                           "with weights, smoothing or a reduction")
                    self.ctx.add(line, "compat-v1", f"tf.{path}: {why}: kept as "
                                 f"tf.compat.v1.{path}", "review")
                    return call.with_changes(func=func)
            return call
        assert bound is not None
        labels, logits = bound[first].value, bound["logits"].value
        if kind == "dense" and not _stopped(labels):
            wrapper = self.ctx.tf(namespace, "stop_gradient", original.func, qualname)
            if wrapper is None:
                self.ctx.add(line, "manual", "no tensorflow import to spell tf.stop_gradient",
                             "review")
                return call
            labels = cst.Call(func=wrapper, args=[cst.Arg(labels)])
        if to_xent:
            bound = {"labels": bound[first], "logits": bound["logits"]}
            return self._to_xent(call, bound, labels, kind, line, reduction="mean")
        mean = self.ctx.tf(namespace, "reduce_mean", original.func, qualname)
        function = self.ctx.tf(namespace, "nn." + _XENT_NAME[kind], original.func, qualname)
        if mean is None or function is None:
            return call
        self.ctx.add(line, "tf-losses", f"tf.{path} -> tf.reduce_mean(tf.nn.{_XENT_NAME[kind]}"
                     "(...)): TF1's default reduction with weights 1"
                     + ("; labels get no gradient, as in TF1" if kind == "dense" else "")
                     + "; TF2 adds nothing to the LOSSES collection")
        new = parse_template_expression("{mean}({function}(labels={labels}, logits={logits}))",
                                        mean=mean, function=function, labels=labels,
                                        logits=logits)
        return new.with_changes(lpar=call.lpar, rpar=call.rpar)

    def _reduce(self, call: cst.Call, path: str, line: int) -> cst.BaseExpression:
        keywords = {a.keyword.value for a in call.args if a.keyword is not None}
        positional = positional_count(call.args)
        args = list(call.args)
        for i, arg in enumerate(args):
            if arg.keyword is None or arg.keyword.value not in _REDUCE_KEYWORDS:
                continue
            old = arg.keyword.value
            new, slot, rule = _REDUCE_KEYWORDS[old]
            if new in keywords or positional > slot:
                self.ctx.add(line, "manual", f"tf.{path}: both {old}= and {new} given",
                             "review")
                continue
            args[i] = renamed(arg, new)
            self.ctx.add(line, rule, f"{old}= -> {new}=")
        return call.with_changes(args=args)


def _signature(kind: str, namespace: str, pre_1_0: bool) -> list[str]:
    """Parameter order of a cross-entropy: TensorFlow < 1.0 took (logits, labels)."""
    if pre_1_0:
        return ["logits", "labels", "name"] if kind == "sparse" else [
            "logits", "labels", "dim", "name"]
    if kind == "sparse":
        return ["labels", "logits", "name"]
    if kind == "v2" or namespace == "v2":
        return ["labels", "logits", "axis", "name", "dim"]
    return ["labels", "logits", "dim", "name", "axis"]


def _stopped(node: cst.BaseExpression) -> bool:
    """Labels that already carry no gradient: ``tf.stop_gradient(...)`` or a literal."""
    if isinstance(node, cst.Call):
        name = names.dotted(node.func)
        return name is not None and name.split(".")[-1] == "stop_gradient"
    return is_constant(node)
