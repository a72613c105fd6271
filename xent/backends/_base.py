"""The backend protocol: what xent needs from a framework.

A backend is an object with a ``name`` and the methods below. The public functions in
``xent`` validate arguments, normalise ``axis`` (to a non-negative int) and convert
labels before calling the four math methods, so a backend only computes. Subclass
:class:`Backend` to get sensible defaults, or implement the same attributes on any
object and pass it to :func:`xent.backends.register`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Array = Any

_dtype_names: dict[Any, str] = {}


def numpy_dtype_name(dtype: Any) -> str:
    """``np.dtype(dtype).name``, cached (the property costs ~1 us on every access)."""
    try:
        return _dtype_names[dtype]
    except (KeyError, TypeError):
        name = str(np.dtype(dtype).name)
        try:
            _dtype_names[dtype] = name
        except TypeError:  # unhashable dtype-like
            pass
        return name


class Backend:
    """Base class for xent backends. Override what your framework needs."""

    #: Name used by ``backend=``, ``use_backend`` and ``XENT_BACKEND``.
    name: str = ""
    #: Top-level module that must already be in ``sys.modules`` before a value can belong to
    #: this backend (dispatch never imports it). ``None`` means "always ask ``owns``".
    module: str | None = None
    #: Execution modes the conformance suite runs this backend in.
    modes: tuple[str, ...] = ("eager",)
    #: Extra modes the conformance suite runs the catalog in: the framework's transforms that
    #: produce values (torch ``vmap``/``compile``, TF ``xla``, JAX ``vmap``/``export``...).
    #: ``run``, ``value_and_grad`` and ``jvp`` accept them like ``modes``; the rest of the test
    #: suite parametrises over ``modes`` only.
    transform_modes: tuple[str, ...] = ()
    #: mode -> (case names, dtypes) the project's *test suite* runs in that transform mode
    #: when running all of them would be too slow (``xent conformance`` runs everything);
    #: a transform mode not listed runs the whole catalog in the tests too.
    transform_test_subset: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    #: mode -> (quantities, why): what the conformance catalog's option cases, whose calls
    #: capture their options as NumPy arrays, cannot measure in that mode (n/a, with why);
    #: the quantities as in ``xent.conformance.runner`` ("all" for every one).
    captured_option_limits: dict[str, tuple[tuple[str, ...], str]] = {}
    #: Modes in which sparse labels out of range give NaN instead of ValueError.
    tracing_modes: tuple[str, ...] = ()
    #: Whether :meth:`value_and_grad` is implemented (frameworks with autodiff).
    has_autodiff: bool = False
    #: Types this backend computes on as they are, with no ``asarray`` (NumPy: ndarray).
    native_types: tuple[type, ...] = ()
    #: Whether losses and log-probabilities are accurate to a few eps *relative* even where
    #: they are far below eps (confident predictions); else a few eps of their scale.
    relative_accuracy: bool = False
    #: Whether ``ignore_index`` costs about nothing (the framework's own loss kernel skips the
    #: rows): twins then pass a framework's default ``ignore_index`` without first reading
    #: the labels for it; else ``ignore_index`` costs a pass over the logits.
    cheap_ignore_index: bool = False
    #: Names of other backends whose tensors this one takes as labels and option arrays
    #: (converted with ``asarray``): DTensor logits take plain torch tensors of global values.
    accepts: tuple[str, ...] = ()
    #: Floating dtypes this framework supports, by NumPy-style name.
    dtypes: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
    #: Into how many equal shards the class axis is split (a backend from :meth:`sharded`):
    #: the class count of the options (label smoothing, ``class_weights``) is global.
    class_shards: int = 1

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        """True when ``x`` is a tensor of this framework (called only when ``module`` is
        imported, once per type: the answer is cached by ``type(x)``)."""
        raise NotImplementedError

    def shape(self, x: Array) -> tuple[int | None, ...] | None:
        """Static shape, with ``None`` for dimensions unknown while tracing; ``None`` for a
        rank unknown while tracing (TF graphs). Then the math methods get ``axis`` as the
        caller gave it (possibly negative) and must check the rank, the axis and the shapes
        of labels and logits when the graph runs (messages: ``xent._validate``'s templates)."""
        return tuple(x.shape)

    def dtype_name(self, x: Array) -> str:
        """NumPy-style dtype name: ``"float32"``, ``"bfloat16"``, ``"int64"``, ..."""
        return numpy_dtype_name(x.dtype)

    def asarray(self, value: Any, *, like: Array | None = None, dtype: str | None = None) -> Array:
        """Convert framework-neutral input (NumPy array, sequence, scalar) to this framework,
        on the device of ``like`` when given, in ``dtype`` (a NumPy-style name) when given."""
        raise NotImplementedError

    def adopt(self, value: Any, like: Array) -> Array | None:
        """Framework-neutral ``value`` (NumPy array, sequence) as a tensor of this framework
        in its own dtype, on ``like``'s device, where NumPy must not be used (inside a
        framework's tracer that cannot read NumPy attributes, e.g. ``torch.compile``); None
        (the default): the API converts and checks it with NumPy."""
        return None

    def cast(self, x: Array, dtype: str) -> Array:
        """``x`` (already of this framework) in ``dtype``; ``x`` itself when it matches."""
        raise NotImplementedError

    def to_numpy(self, x: Array) -> np.ndarray:
        """A NumPy copy of a concrete tensor (tests, demo and conformance only)."""
        return np.asarray(x)

    def stop_gradient(self, x: Array) -> Array:
        """``x`` with no gradient flowing back through it (TF1 label semantics)."""
        return x

    def first_out_of_range(self, labels: Array, num_classes: int) -> int | None:
        """The first sparse label outside ``[0, num_classes)``, or ``None``.

        Return ``None`` without looking when the values are not available without a
        device sync or while tracing; the loss of such a row must then be NaN."""
        return None

    def few_labels(self, labels: Array) -> list[int] | None:
        """Sparse ``labels`` as a flat list of Python ints when they are few (at most 64)
        and readable at once on the host (no device sync, not while tracing): the API then
        checks their range, and looks for ``ignore_index``, in Python. None (the default):
        it asks :meth:`first_out_of_range`."""
        return None

    def plain_path(self, logits_type: type) -> Any:
        """A fast path for calls with no options whose logits are of ``logits_type``: an
        object with ``dense`` and ``sparse`` functions ``(labels, logits, axis, reduction)``
        that return the loss where the arguments are plainly valid, else None (the general
        path then checks, raises and computes as usual). None (the default): no fast path.
        Asked once per type."""
        return None

    def reduce(self, loss: Array, reduction: str) -> Array:
        """``"sum"`` or ``"mean"`` of all elements (``"none"`` never reaches here)."""
        return loss.sum() if reduction == "sum" else loss.mean()

    def sparse_softmax_cross_entropy_reduced(self, labels: Array, logits: Array, axis: int,
                                             options: Any, reduction: str) -> Array | None:
        """The sparse loss already reduced (``"sum"``, ``"mean"`` or ``"weighted_mean"``,
        with ``options`` or None), where the framework's kernel fuses the reduction and means
        what xent means; None (the default): the API reduces the per-row loss itself."""
        return None

    def sharded(self, axis_name: Any) -> Backend:
        """This backend where the class axis is split over the named mesh axis (the public
        functions' ``axis_name=``): a backend whose math gives the global result from each
        device's shard (JAX inside ``jax.shard_map``). Backends without named mesh axes
        raise the TypeError below."""
        from xent import _validate

        raise _validate.no_mesh_axis(self.name, axis_name)

    # -- math (arguments validated, axis a non-negative int; as given if the rank is unknown)
    def softmax(self, logits: Array, axis: int) -> Array:
        raise NotImplementedError

    def log_softmax(self, logits: Array, axis: int) -> Array:
        raise NotImplementedError

    def softmax_cross_entropy_with_logits(self, labels: Array, logits: Array, axis: int) -> Array:
        raise NotImplementedError

    def sparse_softmax_cross_entropy_with_logits(
        self, labels: Array, logits: Array, axis: int
    ) -> Array:
        raise NotImplementedError

    # -- loss options (DESIGN section 6) ---------------------------------------------------
    def softmax_cross_entropy_with_options(self, labels: Array, logits: Array, axis: int,
                                           options: Any) -> Array:
        """The per-row dense loss with ``options`` (a validated ``xent._options.Options``).
        The default composes them from this backend's kernels and array operations
        (``xent._options.dense_rows``); override only to run the same formula faster."""
        from xent import _options

        return _options.dense_rows(self, labels, logits, axis, options)

    def sparse_softmax_cross_entropy_with_options(self, labels: Array, logits: Array,
                                                  axis: int, options: Any) -> Array:
        """The per-row sparse loss with ``options`` (``xent._options.sparse_rows``)."""
        from xent import _options

        return _options.sparse_rows(self, labels, logits, axis, options)

    # Array operations the options are composed from. Arguments are this backend's arrays
    # (or Python scalars where noted); NumPy broadcasting rules throughout.
    def where(self, condition: Array, x: Any, y: Any) -> Array:
        """``x`` where ``condition`` else ``y``; either may be a Python scalar (taking the
        other's dtype)."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.where")

    def equal(self, x: Array, value: int) -> Array:
        """Elementwise ``x == value`` (boolean)."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.equal")

    def not_equal(self, x: Array, value: int) -> Array:
        """Elementwise ``x != value`` (boolean)."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.not_equal")

    def expand_dims(self, x: Array, axis: int) -> Array:
        raise NotImplementedError(f"{self.name}: loss options need Backend.expand_dims")

    def in_range(self, index: Array, num_classes: Any) -> Array:
        """Elementwise ``0 <= index < num_classes`` (boolean)."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.in_range")

    def one_hot(self, index: Array, like: Array, axis: int) -> Array:
        """One-hot of in-range ``index`` along ``axis``: the shape and dtype of ``like``."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.one_hot")

    def take(self, table: Array, index: Array) -> Array:
        """``table[index]`` for a 1-D ``table``; an index out of range gives any finite value
        (its row is NaN or ignored anyway)."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.take")

    def along(self, vector: Array, axis: int, like: Array) -> Array:
        """A ``[C]`` vector shaped to broadcast along ``axis`` of ``like``."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.along")

    def row_dot(self, labels: Array, vector: Array, axis: int) -> Array:
        """``sum_c labels_c * vector_c`` along ``axis``, in the dtype of ``labels``."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.row_dot")

    def broadcast_like(self, x: Array, like: Array) -> Array:
        """``x`` broadcast to the shape of ``like``."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.broadcast_like")

    def total(self, x: Array) -> Array:
        """The sum of every element (float32 accumulation for 16-bit floats, returned so)."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.total")

    def count(self, mask: Array, like: Array) -> Array:
        """The number of True elements, as a float in what :meth:`total` returns for
        ``like``."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.count")

    def divide(self, total: Array, denominator: Array, like: Array) -> Array:
        """``total / denominator`` (``0 / 0`` is NaN) in the dtype of ``like``."""
        raise NotImplementedError(f"{self.name}: loss options need Backend.divide")

    def class_count(self, logits: Array, axis: int, dtype: str | None) -> Any:
        """``C`` at run time (only where the shape is unknown while tracing), as ``dtype``
        (None: an integer)."""
        raise NotImplementedError(f"{self.name}: the class count is static on {self.name}")

    # -- conformance hooks -----------------------------------------------------------------
    def run(self, mode: str, fn: Callable[..., Array], *args: np.ndarray) -> np.ndarray:
        """Convert the NumPy ``args`` to this framework, call ``fn`` on them in ``mode``
        (e.g. eager, jit, TF1 graph + Session) and return the result as NumPy."""
        if mode != "eager":
            raise ValueError(f"{self.name}: unknown mode {mode!r}")
        tensors = [self.asarray(a, dtype=str(a.dtype)) for a in args]
        return self.to_numpy(fn(*tensors))

    def value_and_grad(
        self,
        mode: str,
        fn: Callable[[Array, Array], Array],
        labels: np.ndarray,
        logits: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """``fn(labels, logits)`` and the gradients of its sum with respect to labels and
        logits, as NumPy. The labels gradient may be ``None`` where none flows (integer
        labels, or a ``stop_gradient``); frameworks that cannot tell return zeros."""
        raise NotImplementedError(f"{self.name} has no autodiff")

    def jvp(
        self,
        mode: str,
        fn: Callable[..., Array],
        args: tuple[np.ndarray, ...],
        tangents: tuple[np.ndarray | None, ...],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Forward mode: ``fn(*args)`` and its directional derivative along ``tangents``
        (one per argument; ``None`` holds that argument constant, as for integer labels),
        both as NumPy. Computed with the framework's forward-mode autodiff where it has one
        (``torch.func.jvp``, ``tf.autodiff.ForwardAccumulator``, ``jax.jvp``)."""
        raise NotImplementedError(f"{self.name} has no autodiff")

    def release(self) -> None:
        """Free what the hooks above compiled and cached for the functions they were given
        (jitted programs, traced graphs, the framework's compilation caches). The conformance
        runner calls it after each case, once it no longer calls that case's functions: a
        compiled program holds memory mappings, and a process running the whole catalog
        would otherwise reach the kernel's limit on them (``vm.max_map_count``). Later calls
        compile again. The default does nothing; optional for third-party backends."""

    def __repr__(self) -> str:
        return f"<xent backend {self.name!r}>"
