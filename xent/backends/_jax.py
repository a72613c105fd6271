"""The JAX backend: dispatch, conversion and the conformance hooks.

The math is in :mod:`xent.backends._jax_ops` (``jax.nn`` kernels, the masked-class fix,
``custom_jvp`` / ``custom_vmap`` rules: native under every JAX transform); the hooks' modes
(``eager``, ``jit`` and the transforms ``vmap``, ``export``, ``mesh``) in
:mod:`xent.backends._jax_modes`; sharded inputs in :mod:`xent.backends._jax_partitioning`
(GSPMD) and :mod:`xent.backends._jax_mesh_axis` (``axis_name=`` inside ``shard_map``),
both on the vocab-parallel steps of :mod:`xent.backends._jax_sharded`. float64 needs
``jax_enable_x64``, as everywhere in JAX; the conformance hooks enable it for the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xent.backends import _jax_modes, _jax_ops
from xent.backends._base import Backend
from xent.backends._jax_options import JaxArrayOps

Array = Any
_DTYPES = ("float16", "bfloat16", "float32")
_NAMES: dict[Any, str] = {}  # dtype -> NumPy-style name


def _canonical(dtype: str | np.dtype) -> np.dtype:
    """The JAX dtype for a NumPy-style name: 64-bit types are 32-bit without x64."""
    return jax.dtypes.canonicalize_dtype(np.dtype(dtype))


class JaxBackend(JaxArrayOps, Backend):
    """``jax.Array`` and JAX tracers (inside ``jit``, ``grad``, ``vmap``, ``export``...)."""

    name = "jax"
    module = "jax"
    modes = _jax_modes.EXECUTION_MODES  # ("eager", "jit")
    #: the value-producing transforms the conformance suite also runs the catalog through
    transform_modes = _jax_modes.TRANSFORM_MODES  # ("vmap", "export", "mesh")
    tracing_modes = ("jit", "vmap", "export", "mesh")  # out-of-range labels give NaN rows
    #: The project's test suite runs each transform mode on the product of these cases and
    #: dtypes only: XLA compiles per shape and dtype (0.2-0.8 s a program), and the catalog
    #: in every dtype would add ~2 min a mode. ``xent conformance`` runs the whole catalog.
    #: The cases cover what a transform can get wrong: masked classes and NaN rows (fix
    #: branch, batch leaks), out-of-range labels (tracing), the class axis moved by vmap's
    #: batch axis (rank3_axis0), the lax.cond path and its vmap rule (large_classes), rank 1,
    #: a class axis of size 1, an empty batch, int32 labels; float32 (bfloat16 under vmap
    #: and float64 under export: tests/test_jax_transforms.py::test_jvp_hook).
    captured_option_limits = {"export": (("all",), (
        "export makes every dimension symbolic: options captured with fixed shapes cannot "
        "follow them (JAX refuses them too)"))}
    transform_test_subset = {
        "vmap": (("masked", "masked_all_but_one", "nan_row", "inf_rows", "zero_labels",
                  "sparse_out_of_range", "rank3_axis0", "large_classes", "zero_batch"),
                 ("float32",)),
        "export": (("masked", "nan_row", "inf_rows", "sparse_edges", "sparse_out_of_range",
                    "rank1", "rank3_axis1", "one_class", "zero_batch"), ("float32",)),
        # the vocab-parallel steps: masked classes (+ soft labels), ties at the maximum
        # (r' and k), NaN rows, out-of-range labels (+ the option cases, as every mode);
        # tests/test_jax_sharded.py runs them on 8 devices
        "mesh": (("masked", "near_ties", "inf_rows", "sparse_out_of_range"), ("float32",)),
    }
    has_autodiff = True

    #: float64 arrays exist only while ``jax_enable_x64`` is on (user code decides that);
    #: the conformance hooks take float64 input either way, enabling x64 for the call.
    dtypes = _DTYPES + ("float64",)

    # -- dispatch -------------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        return isinstance(x, (jax.Array, jax.core.Tracer))  # tracers: inside jit/grad/vmap

    def dtype_name(self, x: Array) -> str:
        try:
            return _NAMES[x.dtype]
        except KeyError:  # numpy's dtype.name costs ~10us a call: cached (eager overhead)
            return _NAMES.setdefault(x.dtype, str(x.dtype.name))

    def asarray(self, value: Any, *, like: Array | None = None, dtype: str | None = None) -> Array:
        host = np.asarray(value)
        canonical = _canonical(dtype if dtype is not None else host.dtype)  # int64 -> int32
        if like is not None and canonical.kind in "iu" and canonical != host.dtype:
            _check_fits(host, canonical)
        if canonical != host.dtype:
            host = host.astype(canonical)  # never jnp's "dtype not available" warning
        device = _device_of(like)
        return jnp.asarray(host) if device is None else jax.device_put(host, device)

    def cast(self, x: Array, dtype: str) -> Array:
        return x if self.dtype_name(x) == dtype else x.astype(_canonical(dtype))

    def stop_gradient(self, x: Array) -> Array:
        return jax.lax.stop_gradient(x)

    def first_out_of_range(self, labels: Array, num_classes: int) -> int | None:
        """Checked for concrete arrays on CPU (a read of host memory, no transfer); tracers
        and accelerator arrays get NaN rows instead."""
        if isinstance(labels, jax.core.Tracer) or labels.size == 0:
            return None
        if not labels.is_fully_addressable or any(d.platform != "cpu"
                                                  for d in labels.devices()):
            return None  # another host's shards, or an accelerator: NaN rows
        host = np.asarray(labels)  # zero-copy view of a CPU buffer
        unsigned = host.view(f"u{host.itemsize}") if host.dtype.kind == "i" else host
        if unsigned.max() < num_classes:  # negative labels wrap to huge unsigned values
            return None
        flat = host.ravel()
        return int(flat[(flat < 0) | (flat >= num_classes)][0])

    def reduce(self, loss: Array, reduction: str) -> Array:
        return _jax_ops.reduce(loss, reduction)

    def sharded(self, axis_name: Any) -> Backend:
        """This backend inside ``jax.shard_map``, the class axis split along the mesh axis
        (or tuple of axes) ``axis_name``: :mod:`xent.backends._jax_mesh_axis`."""
        from xent.backends._jax_mesh_axis import on_mesh_axis

        return on_mesh_axis(tuple(axis_name) if isinstance(axis_name, list) else axis_name)

    # -- math -----------------------------------------------------------------------------
    def softmax(self, logits: Array, axis: int) -> Array:
        return _jax_ops.softmax(logits, axis)

    def log_softmax(self, logits: Array, axis: int) -> Array:
        return _jax_ops.log_softmax(logits, axis)

    def softmax_cross_entropy_with_logits(self, labels: Array, logits: Array, axis: int) -> Array:
        return _jax_ops.cross_entropy(labels, logits, axis)

    def sparse_softmax_cross_entropy_with_logits(
        self, labels: Array, logits: Array, axis: int
    ) -> Array:
        return _jax_ops.sparse_cross_entropy(labels, logits, axis)

    # -- conformance hooks (NumPy in, NumPy out; x64 on for float64 or wide integers) -----
    def run(self, mode: str, fn: Callable[..., Array], *args: np.ndarray) -> np.ndarray:
        with _jax_modes.x64_for(*args):
            return _jax_modes.call(mode, fn, self._arrays(args))

    def value_and_grad(
        self, mode: str, fn: Callable[[Array, Array], Array], labels: np.ndarray,
        logits: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Integer (and bool) labels get no gradient (None); a stop_gradient gives zeros."""
        floating = bool(jnp.issubdtype(labels.dtype, jnp.floating))  # bfloat16 included
        computation = _jax_modes.value_and_grad_of(fn, floating)
        with _jax_modes.x64_for(labels, logits):
            value, dy, dx = _jax_modes.call(mode, computation, self._arrays((labels, logits)))
            return value, dy, dx

    def jvp(
        self, mode: str, fn: Callable[..., Array], args: tuple[np.ndarray, ...],
        tangents: tuple[np.ndarray | None, ...],
    ) -> tuple[np.ndarray, np.ndarray]:
        """``jax.jvp``; a tangent is cast to its argument's dtype (JAX requires it), None
        holds that argument constant (integer labels)."""
        if len(tangents) != len(args):
            raise ValueError(f"jax: {len(args)} arguments but {len(tangents)} tangents")
        moving = tuple(t is not None for t in tangents)
        with _jax_modes.x64_for(*args):  # tangents take their argument's dtype
            primals = self._arrays(args)
            directions = [self.asarray(t, dtype=self.dtype_name(p))
                          for t, p in zip(tangents, primals) if t is not None]
            value, tangent = _jax_modes.call(mode, _jax_modes.jvp_of(fn, moving),
                                             [*primals, *directions])
            return value, tangent

    def release(self) -> None:
        """Forget the hooks' transformed computations (``_jax_modes.release``)."""
        _jax_modes.release()

    def _arrays(self, args: tuple[np.ndarray, ...]) -> list[Array]:
        return [self.asarray(a, dtype=str(a.dtype)) for a in args]


def _device_of(like: Array | None) -> Any:
    """The one device of a concrete ``like`` (None for tracers, sharded arrays or None)."""
    if like is None or isinstance(like, jax.core.Tracer):
        return None
    devices = like.devices()
    return next(iter(devices)) if len(devices) == 1 else None


def _check_fits(host: np.ndarray, dtype: np.dtype) -> None:
    """Integer labels that 32-bit JAX would silently wrap (2**32 -> 0, a valid class)."""
    if host.size == 0 or host.dtype.kind not in "iu":
        return
    info = np.iinfo(dtype)
    bad = (host < info.min) | (host > info.max)
    if bad.any():
        value = int(host.ravel()[bad.ravel().argmax()])
        raise ValueError(
            f"labels: sparse label {value} is out of range: it does not fit {dtype.name}, "
            "the widest integer JAX has without jax_enable_x64"
        )
