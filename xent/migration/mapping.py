"""The TF1 -> TF2 -> ``tf.compat.v2`` -> xent mapping, as data: one :class:`Row` per symbol.

``xent map`` prints it; ``xent migrate`` applies it; ``tests/test_mapping.py`` runs every
row's :attr:`Row.examples` in TF1 graph mode, TF2 eager mode, through ``tf.compat.v2``
and through xent, and checks that values and gradients agree.

The example expressions use ``tf`` (bound to ``tf.compat.v1`` for the ``tf1`` column),
``xent``, ``logits`` (floating ``[batch, classes]``), ``labels`` (dense, the shape of
``logits``; integer ``[batch]`` class indices in the sparse rows) and ``x`` (any
positive floating tensor).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Row:
    """One TF1 symbol and where it goes."""

    tf1: str
    tf2: str
    compat_v2: str
    xent: str
    change: str
    #: column -> a runnable expression (see the module docstring); empty for Session
    examples: dict[str, str] = field(default_factory=dict)
    #: which inputs the examples take: "dense", "sparse", "unary"
    inputs: str = "dense"


_SG = "tf.stop_gradient(labels)"

ROWS: tuple[Row, ...] = (
    Row(
        "tf.nn.softmax",
        "`tf.nn.softmax`",
        "`tf.compat.v2.nn.softmax`",
        "`xent.softmax`",
        "`dim` -> `axis` (TF2 has no `dim`). Same values and gradients.",
        {
            "tf1": "tf.nn.softmax(logits, dim=-1)",
            "tf2": "tf.nn.softmax(logits, axis=-1)",
            "compat_v2": "tf.compat.v2.nn.softmax(logits, axis=-1)",
            "xent": "xent.softmax(logits, axis=-1)",
            "xent_compat": "xent.compat.v1.nn.softmax(logits, dim=-1)",
        },
        "unary",
    ),
    Row(
        "tf.nn.log_softmax",
        "`tf.nn.log_softmax`",
        "`tf.compat.v2.nn.log_softmax`",
        "`xent.log_softmax`",
        "`dim` -> `axis`. Same values. Use it instead of `log(softmax(x))`, which is "
        "-inf where a probability underflows.",
        {
            "tf1": "tf.nn.log_softmax(logits, dim=-1)",
            "tf2": "tf.nn.log_softmax(logits, axis=-1)",
            "compat_v2": "tf.compat.v2.nn.log_softmax(logits, axis=-1)",
            "xent": "xent.log_softmax(logits, axis=-1)",
            "xent_compat": "xent.compat.v1.nn.log_softmax(logits, dim=-1)",
        },
        "unary",
    ),
    Row(
        "tf.nn.softmax_cross_entropy_with_logits",
        "`tf.nn.softmax_cross_entropy_with_logits` + `tf.stop_gradient(labels)`",
        "`tf.compat.v2.nn.softmax_cross_entropy_with_logits` + `tf.stop_gradient(labels)`",
        "`xent.softmax_cross_entropy_with_logits` + `tf.stop_gradient(labels)`, or "
        "`xent.compat.v1.nn.softmax_cross_entropy_with_logits`",
        "TF1 (>= 1.0) takes named arguments only; a positional call is pre-1.0 code whose "
        "order is (logits, labels), while TF2's is (labels, logits). `dim` -> `axis`. "
        "TF1 lets no gradient into labels, TF2 does: wrap labels in `tf.stop_gradient` to "
        "keep TF1's meaning. Same values.",
        {
            "tf1": "tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits, dim=-1)",
            "tf2": f"tf.nn.softmax_cross_entropy_with_logits(labels={_SG}, logits=logits, axis=-1)",
            "compat_v2": "tf.compat.v2.nn.softmax_cross_entropy_with_logits("
            f"labels={_SG}, logits=logits, axis=-1)",
            "xent": f"xent.softmax_cross_entropy_with_logits(labels={_SG}, logits=logits, axis=-1)",
            "xent_compat": "xent.compat.v1.nn.softmax_cross_entropy_with_logits("
            "labels=labels, logits=logits, dim=-1)",
        },
    ),
    Row(
        "tf.nn.softmax_cross_entropy_with_logits_v2",
        "`tf.nn.softmax_cross_entropy_with_logits`",
        "`tf.compat.v2.nn.softmax_cross_entropy_with_logits`",
        "`xent.softmax_cross_entropy_with_logits`",
        "The `_v2` suffix goes: TF2's plain name has `_v2`'s meaning (gradient into labels). "
        "`dim` -> `axis`. Same values and gradients.",
        {
            "tf1": "tf.nn.softmax_cross_entropy_with_logits_v2("
            "labels=labels, logits=logits, dim=-1)",
            "tf2": "tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=-1)",
            "compat_v2": "tf.compat.v2.nn.softmax_cross_entropy_with_logits("
            "labels=labels, logits=logits, axis=-1)",
            "xent": "xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=-1)",
            "xent_compat": "xent.compat.v1.nn.softmax_cross_entropy_with_logits_v2("
            "labels=labels, logits=logits, dim=-1)",
        },
    ),
    Row(
        "tf.nn.sparse_softmax_cross_entropy_with_logits",
        "`tf.nn.sparse_softmax_cross_entropy_with_logits`",
        "`tf.compat.v2.nn.sparse_softmax_cross_entropy_with_logits`",
        "`xent.sparse_softmax_cross_entropy_with_logits`",
        "TF1 (>= 1.0) takes named arguments only; a positional call is pre-1.0 code whose "
        "order is (logits, labels), while TF2's is (labels, logits). Same values; integer "
        "labels have no gradient.",
        {
            "tf1": "tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)",
            "tf2": "tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)",
            "compat_v2": "tf.compat.v2.nn.sparse_softmax_cross_entropy_with_logits("
            "labels=labels, logits=logits)",
            "xent": "xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)",
            "xent_compat": "xent.compat.v1.nn.sparse_softmax_cross_entropy_with_logits("
            "labels=labels, logits=logits)",
        },
        "sparse",
    ),
    Row(
        "tf.losses.softmax_cross_entropy",
        "`tf.reduce_mean` + `tf.nn.softmax_cross_entropy_with_logits` + "
        "`tf.stop_gradient(labels)`",
        "`tf.compat.v2.reduce_mean` + `tf.compat.v2.nn.softmax_cross_entropy_with_logits` + "
        "`tf.compat.v2.stop_gradient(labels)`",
        '`xent.softmax_cross_entropy_with_logits(..., reduction="mean")` + '
        "`tf.stop_gradient(labels)`",
        "Labels first, (onehot_labels, logits); the mean over the batch (the default "
        "SUM_BY_NONZERO_WEIGHTS with weights=1); no gradient into labels. TF2's `tf.losses` "
        "is Keras: the rewrite spells the mean out. With `weights`, `label_smoothing` or "
        "`reduction` it stays `tf.compat.v1.losses.softmax_cross_entropy`. TF2 adds "
        "nothing to the `LOSSES` collection, and reduces in the input dtype (TF1 in float32).",
        {
            "tf1": "tf.losses.softmax_cross_entropy(labels, logits)",
            "tf2": f"tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels={_SG}, "
            "logits=logits))",
            "compat_v2": "tf.compat.v2.reduce_mean(tf.compat.v2.nn.softmax_cross_entropy_with_"
            f"logits(labels={_SG}, logits=logits))",
            "xent": f"xent.softmax_cross_entropy_with_logits(labels={_SG}, logits=logits, "
            'reduction="mean")',
        },
    ),
    Row(
        "tf.losses.sparse_softmax_cross_entropy",
        "`tf.reduce_mean` + `tf.nn.sparse_softmax_cross_entropy_with_logits`",
        "`tf.compat.v2.reduce_mean` + "
        "`tf.compat.v2.nn.sparse_softmax_cross_entropy_with_logits`",
        '`xent.sparse_softmax_cross_entropy_with_logits(..., reduction="mean")`',
        "Labels first, (labels, logits); the mean over the batch. TF1 also squeezed labels "
        "of shape [batch, 1]; TF2 needs [batch]. With `weights` or `reduction` it stays "
        "`tf.compat.v1.losses.sparse_softmax_cross_entropy`. TF2 reduces in the input dtype "
        "(TF1 in float32).",
        {
            "tf1": "tf.losses.sparse_softmax_cross_entropy(labels, logits)",
            "tf2": "tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits("
            "labels=labels, logits=logits))",
            "compat_v2": "tf.compat.v2.reduce_mean(tf.compat.v2.nn.sparse_softmax_cross_"
            "entropy_with_logits(labels=labels, logits=logits))",
            "xent": "xent.sparse_softmax_cross_entropy_with_logits(labels=labels, "
            'logits=logits, reduction="mean")',
        },
        "sparse",
    ),
    Row(
        "tf.log",
        "`tf.math.log`",
        "`tf.compat.v2.math.log`",
        "`xent.log_softmax(x)` for `log(softmax(x))`",
        "Renamed. `log(softmax(x))` is better written `log_softmax(x)`: `xent migrate` "
        "reports it.",
        {
            "tf1": "tf.log(x)",
            "tf2": "tf.math.log(x)",
            "compat_v2": "tf.compat.v2.math.log(x)",
        },
        "unary",
    ),
    Row(
        "tf.reduce_sum",
        "`tf.reduce_sum`",
        "`tf.compat.v2.reduce_sum`",
        '`reduction="sum"` of the cross-entropies',
        "`reduction_indices` -> `axis`, `keep_dims` -> `keepdims` (also for reduce_mean, "
        "_max, _min, _prod, _any, _all, _logsumexp). Same values.",
        {
            "tf1": "tf.reduce_sum(x, reduction_indices=[1], keep_dims=True)",
            "tf2": "tf.reduce_sum(x, axis=[1], keepdims=True)",
            "compat_v2": "tf.compat.v2.reduce_sum(x, axis=[1], keepdims=True)",
        },
        "unary",
    ),
    Row(
        "tf.reduce_mean",
        "`tf.reduce_mean`",
        "`tf.compat.v2.reduce_mean`",
        '`reduction="mean"` of the cross-entropies',
        "`reduction_indices` -> `axis`, `keep_dims` -> `keepdims`. Same values.",
        {
            "tf1": "tf.reduce_mean(x, reduction_indices=[1], keep_dims=True)",
            "tf2": "tf.reduce_mean(x, axis=[1], keepdims=True)",
            "compat_v2": "tf.compat.v2.reduce_mean(x, axis=[1], keepdims=True)",
        },
        "unary",
    ),
    Row(
        "tf.Session",
        "eager: `sess.run(t)` -> `t.numpy()`",
        "none: `tf.compat.v1.Session` keeps graph code running",
        "eager: xent calls on eager tensors return eager tensors",
        "TF2 runs eagerly: `sess.run(t)` and `t.eval()` -> `t.numpy()`, the Session goes, "
        "only where that provably computes the same: every fetch a tensor or a structure "
        "of tensors (kept: lists, tuples, dicts, also held in a name), no random value "
        "fetched twice. Operations (`tf.group`, train ops, initialisers), variables, "
        "`feed_dict`, placeholders, queues, readers and iterators have no mechanical "
        "equivalent: such code stays TF1 graph code through `tf.compat.v1`.",
        {},
        "session",
    ),
)

#: TF1 names (after ``tf.``) absent from TF2 that ``tf.compat.v1`` still has: the rewrite
#: keeps them runnable as ``tf.compat.v1.<name>``.
COMPAT_V1: frozenset[str] = frozenset({
    "Session", "InteractiveSession", "ConfigProto", "GraphKeys",
    "placeholder", "placeholder_with_default", "sparse_placeholder",
    "global_variables_initializer", "local_variables_initializer", "variables_initializer",
    "initialize_all_variables", "global_variables", "local_variables",
    "trainable_variables", "get_variable", "variable_scope", "get_collection",
    "add_to_collection", "get_default_graph", "reset_default_graph", "set_random_seed",
    "train.Saver", "train.Optimizer", "train.GradientDescentOptimizer",
    "train.AdamOptimizer", "train.MomentumOptimizer", "train.RMSPropOptimizer",
    "train.AdagradOptimizer", "losses.softmax_cross_entropy",
    "losses.sparse_softmax_cross_entropy", "to_float", "to_int32", "to_int64",
    "random_normal", "random_uniform", "truncated_normal",
})

#: TF1 names whose code needs a graph and a Session: their presence keeps a file's
#: Session code as TF1 graph code.
GRAPH_ONLY: frozenset[str] = frozenset({
    "placeholder", "placeholder_with_default", "sparse_placeholder",
    "global_variables_initializer", "local_variables_initializer", "variables_initializer",
    "initialize_all_variables", "get_variable", "variable_scope", "get_collection",
    "add_to_collection", "get_default_graph", "GraphKeys", "train.Saver", "train.Optimizer",
    "train.GradientDescentOptimizer", "train.AdamOptimizer", "train.MomentumOptimizer",
    "train.RMSPropOptimizer", "train.AdagradOptimizer", "disable_eager_execution",
    "disable_v2_behavior", "Graph",
    # input pipelines run through a Session: queues, queue runners, readers, iterators
    "train.start_queue_runners", "train.Coordinator", "train.QueueRunner",
    "train.add_queue_runner", "train.string_input_producer", "train.input_producer",
    "train.range_input_producer", "train.slice_input_producer", "train.batch",
    "train.shuffle_batch", "train.batch_join", "train.shuffle_batch_join",
    "FIFOQueue", "RandomShuffleQueue", "PaddingFIFOQueue", "PriorityQueue",
    "TFRecordReader", "TextLineReader", "WholeFileReader", "FixedLengthRecordReader",
    "IdentityReader", "ReaderBase", "data.Iterator", "data.make_one_shot_iterator",
    "data.make_initializable_iterator", "py_func", "assign", "assign_add", "assign_sub",
})

COLUMNS = (("tf1", "TF1"), ("tf2", "TF2"), ("compat_v2", "tf.compat.v2"),
           ("xent", "xent"), ("change", "What changes"))


def plain(text: str) -> str:
    """``text`` without its Markdown code marks."""
    return text.replace("`", "")


def as_json() -> str:
    """The mapping as a JSON list of objects (every field, examples included)."""
    rows = [{k: plain(v) if isinstance(v, str) else v for k, v in asdict(row).items()}
            for row in ROWS]
    return json.dumps(rows, indent=2) + "\n"


def as_markdown() -> str:
    """The mapping as a Markdown table."""
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in ROWS:
        cells = [getattr(row, key) for key, _ in COLUMNS]
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def as_table(width: int = 100) -> str:
    """The mapping for a terminal: one block per row, long cells wrapped to ``width``."""
    label = max(len(title) for _, title in COLUMNS) + 2
    out: list[str] = []
    for row in ROWS:
        out.append(row.tf1)
        for key, title in COLUMNS[1:]:
            wrapped = textwrap.wrap(plain(getattr(row, key)), width - label - 2) or [""]
            out.append(f"  {title + ':':<{label}}{wrapped[0]}")
            out.extend(" " * (label + 2) + more for more in wrapped[1:])
        out.append("")
    return "\n".join(out)


def render(fmt: str) -> str:
    """The mapping in ``fmt``: ``table``, ``markdown`` or ``json``."""
    renderers = {"table": as_table, "markdown": as_markdown, "json": as_json}
    if fmt not in renderers:
        raise ValueError(f"format: expected one of table, markdown, json; got {fmt!r}")
    return renderers[fmt]()
