"""The public functions: validate once, pick a backend, call it."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from xent import _dispatch, _validate
from xent import _options as _options_module
from xent._dispatch import owner, pick
from xent._options import Options
from xent.backends import Backend
from xent.backends._base import numpy_dtype_name

Array = Any
Shape = tuple["int | None", ...] | None  # None: a rank unknown while tracing (TF)
#: what a caller of :func:`dense_known` / :func:`sparse_known` has read of its arrays:
#: ``(logits' shape, logits' dtype name, labels' shape, labels' dtype name)``
Known = tuple[Shape, str, Shape, str]
F = TypeVar("F", bound=Callable[..., Any])
_MISSING: Any = object()
# the hot path's names, bound once (module attribute lookups cost ~20 ns each)
_NDARRAY = np.ndarray
_REDUCTIONS = _validate.REDUCTIONS
_neutral_backend = _dispatch.neutral_backend
_check_logits = _validate.check_logits
_check_sparse_labels = _validate.check_sparse_labels
_NO_SMOOTHING = 0.0  # the default label_smoothing object: ``is`` tells it apart fastest
_PLAIN_PATHS = _dispatch.plain_paths
_UNKNOWN = object()


def _keyword_only(fn: F) -> F:
    """Show ``fn``'s contract signature ``(*, labels, logits, ...)``; the ``*args`` it really
    takes exist only to turn a positional call into a clear TypeError."""
    params = [
        p.replace(default=inspect.Parameter.empty) if p.name in ("labels", "logits") else p
        for p in inspect.signature(fn).parameters.values()
        if p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return fn


def _prepare(
    logits: Array, labels: Array, axis: object, backend: str | Backend | None,
    axis_name: Any = None,
) -> tuple[Backend, Array, bool, tuple[int | None, ...] | None, str, int]:
    """Pick the backend, bring ``logits`` to it and check them: ``(backend, logits,
    labels_are_neutral, shape, dtype name, axis)``. One call: this is the hot path.
    ``shape`` is None for an unknown rank; ``axis`` is then as given, maybe negative.
    With ``axis_name``, the backend computes over a class axis split along that mesh axis
    (``Backend.sharded``); shapes stay those of this device's shard."""
    if (backend is None and axis_name is None and type(logits) is _NDARRAY
            and (labels is None or type(labels) is _NDARRAY)):  # NumPy arrays have no owner
        be = _neutral_backend()
        if _NDARRAY in be.native_types:
            shape, dtype = logits.shape, numpy_dtype_name(logits.dtype)
            return be, logits, True, shape, dtype, _check_logits(shape, dtype, axis)
    logits_owner = owner(logits, "logits")
    labels_owner = None if labels is None else owner(labels, "labels")
    if labels_owner is logits_owner is not None and backend is None:
        be = logits_owner  # both tensors of one framework: pick's answer, without the call
    else:
        be = pick(logits_owner, labels_owner, backend)
    if axis_name is not None:
        sharded = getattr(be, "sharded", None)
        if sharded is None:  # a duck-typed third-party backend
            raise _validate.no_mesh_axis(be.name, axis_name)
        be = sharded(axis_name)
    if logits_owner is None and type(logits) not in be.native_types:
        logits = be.asarray(logits)
    shape, dtype = be.shape(logits), be.dtype_name(logits)
    axis = _validate.check_logits(shape, dtype, axis)
    return be, logits, labels_owner is None, shape, dtype, axis


def _option_array(be: Backend, value: Any, name: str, logits: Array,
                  check: Callable[[Shape, str], None],
                  dtype: str | None) -> Array:
    """Option ``name`` checked (``check(shape, dtype_name)``) and brought to the backend of
    ``logits``: NumPy arrays and Python sequences are converted (a sequence of numbers is
    floating), framework tensors must be the logits' framework; cast to ``dtype`` if given."""
    found = owner(value, name)
    if found is None:
        if isinstance(value, (list, tuple, int, float)) and dtype is not None:
            value = np.asarray(value, dtype=np.float64)  # [1, 2, 3]: weights, not integers
        adopted = be.adopt(value, logits)
        if adopted is not None:  # a tracer that cannot read NumPy (torch.compile)
            value, found = adopted, be
    if found is None:
        array = np.asarray(value)
        check(array.shape, numpy_dtype_name(array.dtype))
        if np.ndarray in be.native_types:
            return array  # the NumPy backend casts block by block
        return be.asarray(array, like=logits, dtype=dtype)
    if found is not be and found.name != be.name:  # be may be bound to a mesh axis (sharded)
        if _dispatch.foreign(be, found):
            raise _validate.mixed_frameworks(be.name, found.name, name)
        check(be.shape(value), be.dtype_name(value))
        return be.asarray(value, like=logits, dtype=dtype)  # accepted: converted like NumPy
    check(be.shape(value), be.dtype_name(value))
    return value if dtype is None else be.cast(value, dtype)


def _options(be: Backend, logits: Array, shape: Shape, dtype: str, axis: int,
             weights: Any, class_weights: Any, label_smoothing: Any, where: Any,
             ignore_index: Any = None) -> Options:
    """Every option validated once and converted to the backend of ``logits``. With an
    unknown rank (``shape`` None, TF while tracing) only dtypes are checked statically."""
    # C is global: a class axis split over a mesh axis has class_shards equal shards
    classes = None if shape is None else shape[axis]
    num_classes = None if classes is None else classes * getattr(be, "class_shards", 1)
    loss_shape = None if shape is None else shape[:axis] + shape[axis + 1 :]
    smoothing = _validate.check_label_smoothing(label_smoothing)
    return Options(
        weights=None if weights is None else _option_array(
            be, weights, "weights", logits,
            lambda s, d: _validate.check_weights(s, d, loss_shape), dtype),
        class_weights=None if class_weights is None else _option_array(
            be, class_weights, "class_weights", logits,
            lambda s, d: _validate.check_class_weights(s, d, num_classes), dtype),
        label_smoothing=smoothing,
        smooths=smoothing != 0.0,
        where=None if where is None else _option_array(
            be, where, "where", logits, lambda s, d: _validate.check_where(s, d, shape), None),
        ignore_index=None if ignore_index is None else _validate.check_ignore_index(
            ignore_index),
        num_classes=num_classes,
    )


def softmax(logits: Array, axis: int = -1, *, where: Array | None = None,
            axis_name: Any = None, backend: str | Backend | None = None) -> Array:
    """Softmax along ``axis``: ``exp(logits - logsumexp(logits))``.

    Args:
      logits: ``[..., num_classes, ...]`` floating tensor of any supported framework.
      axis: the class axis.
      where: boolean mask broadcastable to ``logits``: a class where it is False does not
        exist (its logit is never read, its probability is 0).
      axis_name: inside ``jax.shard_map``, the mesh axis (or tuple of axes) that splits
        the class axis: ``logits`` is this device's shard of the classes, and the result
        is this shard of the global softmax (README, "Sharded inputs").
      backend: where framework-neutral input (NumPy, lists) runs.

    Returns a tensor of the shape, dtype and framework of ``logits``. A row with a NaN or
    ``+inf`` logit, with every logit ``-inf``, or with no class left by ``where``, is NaN.

    >>> import xent
    >>> xent.softmax([[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]]).round(8)
    array([[0.227863  , 0.61939586, 0.15274114],
           [0.49674623, 0.20196195, 0.30129182]])
    """
    be, logits, _, shape, _, axis = _prepare(logits, None, axis, backend, axis_name)
    if where is not None:
        logits = _excluded(be, logits, shape, axis, where)
    return be.softmax(logits, axis)


def _excluded(be: Backend, logits: Array, shape: Shape, axis: int,
              where: Any) -> Array:
    """``logits`` with ``-inf`` where the ``where`` mask is False (those classes do not exist)."""
    mask = _option_array(be, where, "where", logits,
                         lambda s, d: _validate.check_where(s, d, shape), None)
    return be.where(mask, logits, -np.inf)


def log_softmax(logits: Array, axis: int = -1, *, where: Array | None = None,
                axis_name: Any = None, backend: str | Backend | None = None) -> Array:
    """Log-softmax along ``axis``: ``logits - logsumexp(logits)``, accurate for confident rows.

    Same arguments and conventions as :func:`softmax` (``-inf`` where ``where`` is False).

    >>> import xent
    >>> xent.log_softmax([0.5, 1.5, 0.1]).round(6)
    array([-1.479011, -0.479011, -1.879011])
    """
    be, logits, _, shape, _, axis = _prepare(logits, None, axis, backend, axis_name)
    if where is not None:
        logits = _excluded(be, logits, shape, axis, where)
    return be.log_softmax(logits, axis)


@_keyword_only
def softmax_cross_entropy_with_logits(
    *args: Any,
    labels: Array = _MISSING,
    logits: Array = _MISSING,
    axis: int = -1,
    reduction: str = "none",
    weights: Array | None = None,
    class_weights: Array | None = None,
    label_smoothing: float = _NO_SMOOTHING,
    where: Array | None = None,
    axis_name: Any = None,
    backend: str | Backend | None = None,
) -> Array:
    """Cross-entropy between label distributions and softmax(logits), along ``axis``.

    ``loss = sum_c labels_c * (logsumexp(logits) - logits_c)``; a class with ``labels_c == 0``
    contributes exactly 0, also where ``logits_c == -inf`` (a masked class). With options,
    per row: ``weights * sum_c class_weights_c * y_c * (logsumexp(x) - x_c)``, where
    ``y = (1 - label_smoothing) * labels + label_smoothing / C`` and the classes where
    ``where`` is False are left out of ``x`` and ``y`` (README, "Loss options").

    Args:
      labels: ``[..., num_classes, ...]``, the shape of ``logits``; soft and unnormalised
        labels follow the formula (they are not renormalised).
      logits: ``[..., num_classes, ...]`` floating tensor.
      axis: the class axis.
      reduction: ``"none"`` (one loss per row), ``"sum"``, ``"mean"`` (over the rows) or
        ``"weighted_mean"`` (the sum over the sum of ``weights * sum_c class_weights_c *
        labels_c``).
      weights: per-row weights, broadcastable to the loss shape.
      class_weights: ``[num_classes]`` floating weights.
      label_smoothing: a real number in [0, 1].
      where: boolean, broadcastable to ``logits``: a class where it is False does not exist.
      axis_name: inside ``jax.shard_map``, the mesh axis (or tuple of axes) that splits the
        class axis: ``labels``, ``logits`` and ``where`` are this device's shard of the
        classes, ``class_weights`` the global ``[C]``; the loss is the global one
        (README, "Sharded inputs").
      backend: where framework-neutral input (NumPy, lists) runs.

    Gradients (autodiff frameworks): ``d/dlogits = softmax * sum(labels) - labels`` and
    ``d/dlabels = logsumexp - logits`` (without options); the true derivatives with them.

    Raises:
      TypeError: positional labels/logits, non-floating logits or class weights, a
        non-boolean ``where``, tensors of two frameworks.
      ValueError: shape mismatch, bad axis, reduction or option, an empty class axis.

    >>> import xent
    >>> xent.softmax_cross_entropy_with_logits(
    ...     labels=[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    ...     logits=[[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]]).round(8)
    array([0.4790107 , 1.19967598])
    """
    if args or labels is _MISSING or logits is _MISSING:
        _missing(args, labels, logits, "softmax_cross_entropy_with_logits")
    if (weights is None and class_weights is None and where is None and backend is None
            and label_smoothing is _NO_SMOOTHING and axis_name is None):
        fast = _PLAIN_PATHS.get(type(logits), _UNKNOWN)  # the owner's, for plain calls
        if fast is _UNKNOWN:
            fast = _dispatch.plain_path(logits)
        if fast is not None and (loss := fast.dense(labels, logits, axis, reduction)) is not None:
            return loss
    be, logits, neutral, shape, dtype, axis = _prepare(logits, labels, axis, backend,
                                                       axis_name)
    if reduction not in _REDUCTIONS:
        _validate.check_reduction(reduction)
    if neutral and (adopted := be.adopt(labels, logits)) is not None:
        labels, neutral = adopted, False  # a tracer that cannot read NumPy (torch.compile)
    if neutral:
        if type(labels) is not _NDARRAY:
            labels = np.asarray(labels)
        labels_dtype = numpy_dtype_name(labels.dtype)
        _validate.check_dense_labels(labels.shape, labels_dtype, shape)
        if _NDARRAY not in be.native_types:
            labels = be.asarray(labels, like=logits, dtype=dtype)
    else:
        _validate.check_dense_labels(be.shape(labels), be.dtype_name(labels), shape)
        labels = be.cast(labels, dtype)
    return _dense(be, labels, logits, shape, dtype, axis, reduction, weights, class_weights,
                  label_smoothing, where)


def _dense(be: Backend, labels: Array, logits: Array, shape: Shape, dtype: str, axis: int,
           reduction: str, weights: Any, class_weights: Any, label_smoothing: Any,
           where: Any) -> Array:
    """The dense loss of checked ``labels`` (cast to ``dtype``) and ``logits`` of ``be``."""
    if (weights is None and class_weights is None and where is None
            and label_smoothing == 0.0 and type(label_smoothing) is not bool):
        loss = be.softmax_cross_entropy_with_logits(labels, logits, axis)  # no options: as is
        if reduction == "none":
            return loss
        return be.reduce(loss, "mean" if reduction == "weighted_mean" else reduction)
    opt = _options(be, logits, shape, dtype, axis, weights, class_weights, label_smoothing,
                   where)
    loss = be.softmax_cross_entropy_with_options(labels, logits, axis, opt)
    if reduction == "none":
        return loss
    denominator = None
    if reduction == "weighted_mean":
        denominator = _options_module.dense_denominator(be, labels, loss, axis, opt)
    return _options_module.reduce(be, loss, reduction, denominator)


def dense_known(be: Backend, labels: Array, logits: Array, known: Known, *, axis: int = -1,
                reduction: str = "none", weights: Any = None, class_weights: Any = None,
                label_smoothing: Any = 0.0, where: Any = None) -> Array:
    """:func:`softmax_cross_entropy_with_logits` of ``labels`` and ``logits`` that are
    already arrays of ``be``, whose static shapes and dtype names the caller has read
    (``known``): the same checks and the same loss, without reading them again (the
    framework twins' hot path: on TF each read costs about half a microsecond)."""
    shape, dtype, labels_shape, labels_dtype = known
    axis = _check_logits(shape, dtype, axis)
    if reduction not in _REDUCTIONS:
        _validate.check_reduction(reduction)
    _validate.check_dense_labels(labels_shape, labels_dtype, shape)
    if labels_dtype != dtype:
        labels = be.cast(labels, dtype)
    return _dense(be, labels, logits, shape, dtype, axis, reduction, weights, class_weights,
                  label_smoothing, where)


@_keyword_only
def sparse_softmax_cross_entropy_with_logits(
    *args: Any,
    labels: Array = _MISSING,
    logits: Array = _MISSING,
    axis: int = -1,
    reduction: str = "none",
    weights: Array | None = None,
    class_weights: Array | None = None,
    label_smoothing: float = _NO_SMOOTHING,
    where: Array | None = None,
    ignore_index: int | None = None,
    axis_name: Any = None,
    backend: str | Backend | None = None,
) -> Array:
    """Cross-entropy with integer class labels: ``logsumexp(logits) - logits[labels]``.

    Equal to :func:`softmax_cross_entropy_with_logits` with one-hot labels, under every
    option and reduction.

    Args:
      labels: integer class indices in ``[0, num_classes)``, the shape of ``logits``
        without ``axis``.
      logits: ``[..., num_classes, ...]`` floating tensor.
      axis, reduction, weights, class_weights, label_smoothing, where, axis_name, backend:
        as in :func:`softmax_cross_entropy_with_logits` (``weighted_mean`` divides by the
        sum of ``weights * class_weights[labels]`` over the rows not ignored). With
        ``axis_name``, labels are global class indices, the same on every shard.
      ignore_index: a row whose label equals it is never read: loss 0, gradient 0, not
        counted by ``mean`` or ``weighted_mean``, exempt from the range check.

    Raises:
      ValueError: a label out of range (in eager execution; while tracing, that row's
        loss is NaN), shape mismatch, bad axis, reduction or option, an empty class axis.
      TypeError: positional labels/logits, non-integer labels or ``ignore_index``,
        non-floating logits.

    >>> import xent
    >>> xent.sparse_softmax_cross_entropy_with_logits(
    ...     labels=[1, 2], logits=[[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]]).round(8)
    array([0.4790107 , 1.19967598])
    """
    if args or labels is _MISSING or logits is _MISSING:
        _missing(args, labels, logits, "sparse_softmax_cross_entropy_with_logits")
    plain = (weights is None and class_weights is None and where is None  # _plain, inline
             and ignore_index is None and (label_smoothing is _NO_SMOOTHING
                                           or _plain(None, None, label_smoothing, None, None)))
    if plain and backend is None and axis_name is None:  # the hot paths: no options
        fast = _PLAIN_PATHS.get(type(logits), _UNKNOWN)  # the owner's (framework tensors)
        if fast is _UNKNOWN:
            fast = _dispatch.plain_path(logits)
        if fast is not None and (loss := fast.sparse(labels, logits, axis, reduction)) is not None:
            return loss
        if (type(logits) is _NDARRAY and type(labels) is _NDARRAY
                and _NDARRAY in (be := _neutral_backend()).native_types):
            return _sparse_numpy(be, labels, logits, axis, reduction)
    be, logits, neutral, shape, dtype, axis = _prepare(logits, labels, axis, backend,
                                                       axis_name)
    if reduction not in _REDUCTIONS:
        _validate.check_reduction(reduction)
    if neutral and (adopted := be.adopt(labels, logits)) is not None:
        labels, neutral = adopted, False  # a tracer that cannot read NumPy (torch.compile)
    if neutral:
        if type(labels) is not _NDARRAY:
            labels = np.asarray(labels)
        labels_dtype = numpy_dtype_name(labels.dtype)
        _validate.check_sparse_labels(labels.shape, labels_dtype, shape, axis)
        if _NDARRAY not in be.native_types:
            labels = be.asarray(labels, like=logits)
    else:
        _validate.check_sparse_labels(be.shape(labels), be.dtype_name(labels), shape, axis)
    return _sparse(be, labels, logits, shape, dtype, axis, reduction, weights, class_weights,
                   label_smoothing, where, ignore_index, plain)


def _plain(weights: Any, class_weights: Any, label_smoothing: Any, where: Any,
           ignore_index: Any) -> bool:
    """Whether every sparse option is at its default."""
    return (weights is None and class_weights is None and where is None
            and ignore_index is None and (label_smoothing is _NO_SMOOTHING or (
                label_smoothing == 0.0 and type(label_smoothing) is not bool)))


def _sparse_numpy(be: Backend, labels: np.ndarray, logits: np.ndarray, axis: Any,
                  reduction: Any) -> Array:
    """The sparse loss of NumPy arrays with no options on the NumPy backend ``be`` (the hot
    path: no owner to look up, the few labels of a small call range-checked right here)."""
    shape = logits.shape
    axis = _check_logits(shape, numpy_dtype_name(logits.dtype), axis)
    if reduction != "none" and reduction not in _REDUCTIONS:
        _validate.check_reduction(reduction)
    _check_sparse_labels(labels.shape, numpy_dtype_name(labels.dtype), shape, axis)
    num_classes = shape[axis]
    if labels.ndim == 1 and labels.size <= 64:  # a few labels: checked right here
        for bad in labels.tolist():
            if not 0 <= bad < num_classes:
                raise _validate.label_out_of_range(bad, num_classes)
    else:
        bad = be.first_out_of_range(labels, num_classes)
        if bad is not None:
            raise _validate.label_out_of_range(bad, num_classes)
    loss = be.sparse_softmax_cross_entropy_with_logits(labels, logits, axis)
    if reduction == "none":
        return loss
    return be.reduce(loss, "mean" if reduction == "weighted_mean" else reduction)


def _sparse(be: Backend, labels: Array, logits: Array, shape: Shape, dtype: str, axis: int,
            reduction: str, weights: Any, class_weights: Any, label_smoothing: Any,
            where: Any, ignore_index: Any, plain: bool) -> Array:
    """The sparse loss of checked ``labels`` and ``logits`` of ``be`` (``plain``: every
    option at its default)."""
    opt = None if plain else _options(be, logits, shape, dtype, axis, weights, class_weights,
                                      label_smoothing, where, ignore_index)
    num_classes = None if shape is None else shape[axis]  # None: unknown while tracing
    if num_classes is not None:
        opt = _checked_labels(be, labels, num_classes, opt)
    if reduction != "none" and (reduced := _sparse_reduced(be, labels, logits, axis, opt,
                                                           reduction)) is not None:
        return reduced
    if opt is None:
        loss = be.sparse_softmax_cross_entropy_with_logits(labels, logits, axis)
        if reduction == "none":
            return loss
        return be.reduce(loss, "mean" if reduction == "weighted_mean" else reduction)
    loss = be.sparse_softmax_cross_entropy_with_options(labels, logits, axis, opt)
    if reduction == "none":
        return loss
    denominator = None
    if reduction != "sum":
        denominator = _options_module.sparse_denominator(be, labels, loss, opt, reduction)
    return _options_module.reduce(be, loss, reduction, denominator)


def sparse_known(be: Backend, labels: Array, logits: Array, known: Known, *, axis: int = -1,
                 reduction: str = "none", weights: Any = None, class_weights: Any = None,
                 label_smoothing: Any = _NO_SMOOTHING, where: Any = None,
                 ignore_index: Any = None) -> Array:
    """:func:`sparse_softmax_cross_entropy_with_logits` of arrays of ``be`` whose static
    shapes and dtype names the caller has read (``known``): see :func:`dense_known`."""
    shape, dtype, labels_shape, labels_dtype = known
    axis = _check_logits(shape, dtype, axis)
    if reduction not in _REDUCTIONS:
        _validate.check_reduction(reduction)
    _check_sparse_labels(labels_shape, labels_dtype, shape, axis)
    plain = _plain(weights, class_weights, label_smoothing, where, ignore_index)
    return _sparse(be, labels, logits, shape, dtype, axis, reduction, weights, class_weights,
                   label_smoothing, where, ignore_index, plain)


def _sparse_reduced(be: Backend, labels: Array, logits: Array, axis: int,
                    opt: Options | None, reduction: str) -> Array | None:
    """The backend's loss reduced in its kernel, where it offers one (None: it does not)."""
    fused = getattr(be, "sparse_softmax_cross_entropy_reduced", None)  # duck-typed: maybe not
    return None if fused is None else fused(labels, logits, axis, opt, reduction)


def _checked_labels(be: Backend, labels: Array, num_classes: int,
                    opt: Options | None) -> Options | None:
    """Raise for a sparse label outside ``[0, num_classes)`` (rows labelled ``ignore_index``
    are exempt) where the backend can read the labels; return ``opt``, without an
    ``ignore_index`` that no label equals (it changes nothing, and costs a pass), None if
    nothing is left of it. A few labels on the host are read once, as Python ints."""
    ignore = None if opt is None else opt.ignore_index
    reader = getattr(be, "few_labels", None)  # a duck-typed backend may not have it
    few = None if reader is None else reader(labels)
    if few is None:
        checked = labels
        if ignore is not None and not 0 <= ignore < num_classes:  # ignored rows are exempt
            checked = be.where(be.equal(labels, ignore), 0, labels)
        bad = be.first_out_of_range(checked, num_classes)
        if bad is not None:
            raise _validate.label_out_of_range(bad, num_classes)
        return opt
    for value in few:
        if not 0 <= value < num_classes and value != ignore:
            raise _validate.label_out_of_range(value, num_classes)
    if opt is None or ignore is None or ignore in few:
        return opt
    if (opt.weights is None and opt.class_weights is None and opt.where is None
            and not opt.smooths):
        return None
    return dataclasses.replace(opt, ignore_index=None)


def _missing(args: tuple[Any, ...], labels: Any, logits: Any, function: str) -> None:
    if args:
        raise _validate.positional_arguments(function)
    names = [n for n, v in (("labels", labels), ("logits", logits)) if v is _MISSING]
    raise TypeError(f"{function}: missing required keyword argument(s) {', '.join(names)}")


use_backend = _dispatch.use_backend


# TensorFlow's autograph would convert these, and the dispatch and imports below them, when
# the first xent call of a process is traced (the TF backend tells autograph to leave all of
# xent alone only once it is imported): an autograph artifact is called as it is. The
# attribute is autograph's marker, set without importing TensorFlow.
for _public in (softmax, log_softmax, softmax_cross_entropy_with_logits,
                sparse_softmax_cross_entropy_with_logits):
    _public.autograph_info__ = frozenset()  # type: ignore[attr-defined]
