"""The TensorFlow backend: TF2 eager, inside ``tf.function``, and TF1 graphs + ``Session``.

Every method builds ordinary TF ops, so the same code returns eager tensors in eager mode and
graph tensors while tracing (``tf.function``, ``tf.compat.v1`` graphs, or a process that
called ``tf.compat.v1.disable_eager_execution()``), and holds under TF's transforms
(``GradientTape`` nested, ``ForwardAccumulator``, ``jit_compile``, ``vectorized_map``,
SavedModel). Nothing reads a symbolic value: the API checks static shapes, what a traced
shape leaves unknown (the rank, dimensions) is checked when the graph runs
(``_tensorflow_checks``), and a sparse label out of range gives NaN while tracing. The math,
its accuracy and its gradients are in ``_tensorflow_ops``; the conformance modes in
``_tensorflow_modes``. float16 and bfloat16 are computed in float32 and returned in their
own dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from xent import _options
from xent.backends import _tensorflow_checks as checks
from xent.backends import _tensorflow_fused as fused
from xent.backends import _tensorflow_modes
from xent.backends import _tensorflow_ops as ops
from xent.backends import _tensorflow_small as small
from xent.backends._base import Backend
from xent.backends._tensorflow_options import TensorFlowArrayOps

_HALF = (tf.float16, tf.bfloat16)
_TRANSFORM_TEST_CASES = (
    "random_1", "random_10", "random_100", "logits_1e4", "near_max", "near_ties", "confident",
    "masked", "masked_all_but_one", "nan_row", "inf_rows", "soft_labels", "unnormalised_labels",
    "zero_labels", "rank3_axis0", "sparse_out_of_range",
)

try:  # autograph would rewrite xent's dispatch and validation on every trace, for nothing:
    # xent has no control flow on tensor values. Private; TF lists keras the same way.
    from tensorflow.python.autograph.core import config as _autograph_config

    if not any(getattr(r, "_prefix", None) == "xent"
               for r in _autograph_config.CONVERSION_RULES):
        _autograph_config.CONVERSION_RULES = (
            _autograph_config.DoNotConvert("xent"), *_autograph_config.CONVERSION_RULES
        )
except (ImportError, AttributeError):  # a TF that moved it: xent is converted, harmlessly
    pass


def _compute(x: Any) -> tf.Tensor:
    """``x`` as a tensor in the dtype the math runs in (half precisions in float32)."""
    x = tf.convert_to_tensor(x)  # a tf.Variable becomes a (differentiable) read here
    return tf.cast(x, tf.float32) if x.dtype in _HALF else x


def _returned(value: tf.Tensor, like: Any) -> tf.Tensor:
    return value if value.dtype == like.dtype.base_dtype else tf.cast(value, like.dtype)


_AXES: dict[int, tf.Tensor] = {}


def _all_axes(rank: int) -> tf.Tensor:
    """Every axis of a tensor of ``rank``, as an eager int32 tensor (made once per rank)."""
    axes = _AXES.get(rank)
    if axes is None:
        with tf.init_scope():  # eager, also when first asked while tracing
            axes = _AXES[rank] = tf.constant(list(range(rank)), tf.int32)
    return axes


#: id(DType) -> (the DType, its name): the twins and the API ask per call
_DTYPE_NAMES: dict[int, tuple[Any, str]] = {}
#: a concrete eager tensor's ``_datatype_enum()`` -> its dtype name: ``EagerTensor.dtype``
#: builds a DType (~0.4 us), the enum is an int (~0.1 us). Private, so checked at import.
_ENUM_NAMES: dict[int, str] = {}


def _eager_reads_work() -> bool:
    """Whether this TF's concrete eager tensors have the private reads the backend uses on
    the hot path (``_datatype_enum()``, and ``shape._dims`` a tuple of ints); else the
    public, slower ones are used."""
    try:
        probe = tf.constant([[1.0, 2.0]])
        return (type(probe) is small.Eager and type(probe.shape._dims) is tuple
                and probe.shape._dims == (1, 2)
                and probe._datatype_enum() == tf.float32.as_datatype_enum)
    except Exception:  # noqa: BLE001 -- any change in a private API: use the public one
        return False


_EAGER = small.Eager if _eager_reads_work() else None


class TensorFlowBackend(TensorFlowArrayOps, Backend):
    name = "tensorflow"
    module = "tensorflow"
    modes = _tensorflow_modes.MODES
    transform_modes = _tensorflow_modes.TRANSFORM_MODES
    tracing_modes = ("function", "graph", *_tensorflow_modes.TRANSFORM_MODES)
    has_autodiff = True
    relative_accuracy = True  # log1p of the sum without the leading term, as NumPy
    dtypes = ("float16", "bfloat16", "float32", "float64")
    #: What the test suite runs in each transform mode, ``mode -> (case names, dtypes)``
    #: (``xent conformance`` runs the whole catalog in every dtype, ~2 and ~1 minutes): XLA
    #: compiles every new shape and dtype (0.3-1 s each) and vectorized_map converts every
    #: new trace, so the suite keeps the cases of the catalog's common shape (compiled once)
    #: and a class axis that is not last, in float32, and for XLA also in bfloat16.
    transform_test_subset: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        "xla": (_TRANSFORM_TEST_CASES, ("float32", "bfloat16")),
        "vectorized_map": (_TRANSFORM_TEST_CASES, ("float32",)),
    }

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        # tf.Tensor covers EagerTensor and graph/symbolic tensors; a ResourceVariable is no
        # tf.Tensor subclass
        return isinstance(x, (tf.Tensor, tf.Variable))

    def shape(self, x: Any) -> tuple[int | None, ...] | None:
        if type(x) is _EAGER:
            return x.shape._dims  # a tuple: 0.1 us, not 0.5
        shape = x.shape  # None: a rank unknown while tracing, checked when the graph runs
        return None if shape.rank is None else tuple(shape.as_list())

    def dtype_name(self, x: Any) -> str:
        if type(x) is _EAGER and (name := _ENUM_NAMES.get(x._datatype_enum())) is not None:
            return name
        dtype = x.dtype
        known = _DTYPE_NAMES.get(id(dtype))  # DType.name costs 0.5-0.8 us; a lookup 0.1
        if known is None or known[0] is not dtype:
            known = _DTYPE_NAMES[id(dtype)] = (dtype, dtype.base_dtype.name)  # keeps it alive
            if type(x) is _EAGER:
                _ENUM_NAMES[x._datatype_enum()] = known[1]
        return known[1]  # TF names match NumPy's

    def asarray(self, value: Any, *, like: Any = None, dtype: str | None = None) -> Any:
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(tf.as_dtype(dtype).as_numpy_dtype, copy=False)
        if like is None or tf.is_symbolic_tensor(like):  # graph: a constant in the current one
            return tf.constant(array)
        with tf.device(like.device):
            return tf.constant(array)

    def cast(self, x: Any, dtype: str) -> Any:
        target = tf.as_dtype(dtype)
        return x if x.dtype == target else tf.cast(x, target)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x)

    def stop_gradient(self, x: Any) -> Any:
        return tf.stop_gradient(x)

    def first_out_of_range(self, labels: Any, num_classes: int) -> int | None:
        if not tf.executing_eagerly() or tf.is_symbolic_tensor(labels):
            return None  # tracing: the values do not exist yet; such a row's loss is NaN
        values = labels.numpy()  # labels are small (one per row); on CPU this is a view
        bad = (values < 0) | (values >= num_classes)
        return int(values[bad][0]) if bad.any() else None

    def reduce(self, loss: Any, reduction: str) -> Any:
        total = _compute(loss)
        rank = total.shape.rank
        if type(total) is small.Eager and rank is not None:
            # the op tf.reduce_* runs, without the ~15 us of Python that finds its axes
            reduced = tf.raw_ops.Sum if reduction == "sum" else tf.raw_ops.Mean
            return _returned(reduced(input=total, axis=_all_axes(rank)), loss)
        total = tf.reduce_sum(total) if reduction == "sum" else tf.reduce_mean(total)
        return _returned(total, loss)

    # -- math (the checks add run-time checks only where a traced shape is unknown) --------
    def softmax(self, logits: Any, axis: int) -> Any:
        return _returned(ops.softmax(checks.logits(_compute(logits), axis), axis), logits)

    def log_softmax(self, logits: Any, axis: int) -> Any:
        return _returned(ops.log_softmax(checks.logits(_compute(logits), axis), axis), logits)

    def softmax_cross_entropy_with_logits(self, labels: Any, logits: Any, axis: int) -> Any:
        if small.fits(logits, axis):
            return small.dense(labels, logits)
        y, x = checks.dense(_compute(labels), _compute(logits), axis)
        return _returned(ops.dense(y, x, axis), logits)

    def sparse_softmax_cross_entropy_with_logits(
        self, labels: Any, logits: Any, axis: int
    ) -> Any:
        if small.fits(logits, axis):
            return small.sparse(labels, logits)
        y, x = checks.sparse(tf.convert_to_tensor(labels), _compute(logits), axis)
        return _returned(ops.sparse_along(y, x, axis), logits)

    # -- loss options: folded into the formulation where the ranks are known (_tensorflow_fused)
    def softmax_cross_entropy_with_options(self, labels: Any, logits: Any, axis: int,
                                           options: _options.Options) -> Any:
        loss = fused.dense_rows(labels, logits, axis, options)
        return _options.dense_rows(self, labels, logits, axis, options) if loss is None else loss

    def sparse_softmax_cross_entropy_with_options(self, labels: Any, logits: Any, axis: int,
                                                  options: _options.Options) -> Any:
        loss = fused.sparse_rows(labels, logits, axis, options)
        return (_options.sparse_rows(self, labels, logits, axis, options) if loss is None
                else loss)

    # -- conformance hooks -----------------------------------------------------------------
    def run(self, mode: str, fn: Callable[..., Any], *args: np.ndarray) -> Any:
        return _tensorflow_modes.run(mode, fn, *args)

    def value_and_grad(
        self, mode: str, fn: Callable[[Any, Any], Any], labels: np.ndarray, logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        return _tensorflow_modes.value_and_grad(mode, fn, labels, logits)

    def jvp(
        self, mode: str, fn: Callable[..., Any], args: tuple[np.ndarray, ...],
        tangents: tuple[np.ndarray | None, ...],
    ) -> tuple[np.ndarray, np.ndarray]:
        return _tensorflow_modes.jvp(mode, fn, args, tangents)

    def release(self) -> None:
        """Forget the hooks' traced and compiled functions (``_tensorflow_modes.release``)."""
        _tensorflow_modes.release()
