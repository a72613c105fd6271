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
    #: Modes in which sparse labels out of range give NaN instead of ValueError.
    tracing_modes: tuple[str, ...] = ()
    #: Whether :meth:`value_and_grad` is implemented (frameworks with autodiff).
    has_autodiff: bool = False
    #: Types this backend computes on as they are, with no ``asarray`` (NumPy: ndarray).
    native_types: tuple[type, ...] = ()
    #: Whether losses and log-probabilities are accurate to a few eps *relative* even where
    #: they are far below eps (confident predictions); else a few eps of their scale.
    relative_accuracy: bool = False
    #: Floating dtypes this framework supports, by NumPy-style name.
    dtypes: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")

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

    def reduce(self, loss: Array, reduction: str) -> Array:
        """``"sum"`` or ``"mean"`` of all elements (``"none"`` never reaches here)."""
        return loss.sum() if reduction == "sum" else loss.mean()

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

    def __repr__(self) -> str:
        return f"<xent backend {self.name!r}>"
