"""The row statistics of the fused option paths, with their gradients (``[rows, C]``).

With ``d = x - max(x)``, ``e = exp(d)``, ``p = e / sum(e)`` and ``log_z = logsumexp(x) - max``
(``_tensorflow_ops.shifted``: relatively accurate), per row:

    sparse_stats(l, x, v):  (log_z, d_l, S)     S = sum_c v_c d_c (only with ``v``)
    dense_stats(u, x, v):   (L, log_z, S)       L = sum(u) log_z - sum_c u_c d_c

``v`` is a class weighting for label smoothing: ``w`` (``[C]``), the ``where`` mask ``m``
(broadcastable to ``x``), or ``m * w`` (given as both); a zero ``v_c`` adds exactly 0, also
where ``d_c`` is ``-inf``. ``log_z``, ``d_l`` and ``S`` each move with the row maximum; their
gradients treat the maximum as a constant, which is exact for what the callers compute from
them (``log_z - d_l`` and ``V log_z - S`` with ``V = sum_c v_c``: functions of ``x`` that
do not change when a constant is added to a row):

    d/dx: p * g_logz - v * ... as written in each ``grad`` below (``p`` from the forward's ``e``)

A row whose incoming gradients are all 0 (an ignored row) gets gradient exactly 0, also
where its logits are NaN (``multiply_no_nan``). Without a tape or accumulator that could
record the call (eager), the statistics are computed without ``tf.custom_gradient``.
Every op has an XLA kernel and a ``tf.vectorized_map`` rule; ``ForwardAccumulator``
differentiates the forward ops themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from xent.backends._tensorflow_ops import matvec, shifted, taped, watched


def _weighted_sum(d: tf.Tensor, w: tf.Tensor | None, m: tf.Tensor | None
                  ) -> tuple[tf.Tensor, tf.Tensor]:
    """``(S, dz)``: ``S = sum_c m_c w_c d_c`` and ``dz = m d`` (0 where ``m`` is 0, also at a
    ``-inf`` logit). ``m`` is a float 0/1 mask that is also 0 where ``w`` is."""
    if m is None:
        return tf.reduce_sum(d if w is None else tf.math.multiply_no_nan(d, w), 1), d
    dz = tf.math.multiply_no_nan(d, m)
    return (tf.reduce_sum(dz, 1) if w is None else matvec(dz, w)), dz


def _v_times(g: tf.Tensor, w: tf.Tensor | None, m: tf.Tensor | None) -> tf.Tensor:
    """``g[:, None] * v``: the row gradient ``g`` of ``S`` spread over the classes."""
    term = tf.expand_dims(g, 1)
    if w is not None:
        term = term * w
    return term if m is None else term * m


def _weight_grad(dz: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
    """``d S / d w`` summed over the rows: ``sum_r g_r m_rc d_rc`` (0 where ``g_r`` is 0)."""
    return tf.reduce_sum(tf.math.multiply_no_nan(dz, tf.expand_dims(g, 1)), 0)


def _zero_safe_scale(g: tf.Tensor, total: tf.Tensor) -> tf.Tensor:
    """``g / total`` per row, exactly 0 where ``g`` is 0 (also for a NaN row)."""
    return tf.expand_dims(tf.math.multiply_no_nan(tf.math.reciprocal(total), g), 1)


def _add_at(dx: tf.Tensor, labels: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """``dx`` with ``values[r]`` added at ``[r, labels[r]]`` (an update, not
    ``tensor_scatter_nd_add``: ``tf.vectorized_map`` has a rule for the update only; int32
    indices: its rule concatenates them with int32 loop indices)."""
    at = tf.gather(dx, labels, batch_dims=1) + values
    rows = tf.range(tf.shape(labels)[0])
    return tf.tensor_scatter_nd_update(dx, tf.stack([rows, tf.cast(labels, tf.int32)], 1), at)


def _or_zeros(g: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(like) if g is None else g


# -- sparse -------------------------------------------------------------------------------
def sparse_stats(labels: tf.Tensor, x: tf.Tensor, w: tf.Tensor | None = None,
                 m: tf.Tensor | None = None, smooth: bool = False,
                 normaliser: tf.Tensor | None = None) -> list[tf.Tensor]:
    """``[log_z, d_l]`` and, with ``smooth``, ``S``; in-range ``labels``. ``normaliser``:
    the ``where`` mask, boolean or as 0/1 floats, for logits not masked (``shifted``'s
    ``kept``); the gradient is 0 at the classes it excludes."""
    if not taped():
        d, _, _, log_z = shifted(x, 1, normaliser, exps=False)
        stats = [log_z, tf.gather(d, labels, batch_dims=1)]
        return stats + [_weighted_sum(d, w, m)[0]] if smooth else stats
    extra = [t for t in (w, m) if t is not None] if smooth else []
    fn = _sparse_fn(smooth, smooth and w is not None, smooth and m is not None,
                    smooth and w is not None and watched(w), normaliser is not None)
    return list(fn(labels, x, *extra, *([] if normaliser is None else [normaliser])))


@functools.cache
def _sparse_fn(smooth: bool, weighted: bool, masked: bool, weight_grad: bool,
               normalised: bool) -> Callable[..., Any]:
    """The differentiable :func:`sparse_stats` of one variant (cached)."""

    @tf.custom_gradient
    def stats(labels: tf.Tensor, x: tf.Tensor, *extra: tf.Tensor) -> Any:
        normaliser = extra[-1] if normalised else None
        extra = extra[:-1] if normalised else extra
        w = extra[0] if weighted else None
        m = extra[-1] if masked else None
        d, e, total, log_z = shifted(x, 1, normaliser)
        out = [log_z, tf.gather(d, labels, batch_dims=1)]
        dz = None
        if smooth:
            s, dz = _weighted_sum(d, w, m)
            out.append(s)

        def grad(g_logz: tf.Tensor, g_dl: tf.Tensor, *g_s: tf.Tensor) -> list[Any]:
            # d/dx = p g_logz + onehot(l) g_dl + v g_S  (the maximum held constant)
            g_logz, g_dl = _or_zeros(g_logz, log_z), _or_zeros(g_dl, log_z)
            dx = tf.math.multiply_no_nan(e, _zero_safe_scale(g_logz, total))
            grads: list[Any] = [None, None]
            if smooth:
                g = _or_zeros(g_s[0], log_z)
                dx = dx + _v_times(g, w, m)
                if weighted:
                    grads.append(_weight_grad(dz, g) if weight_grad else None)
                if masked:
                    grads.append(None)
            if normalised:
                grads.append(None)
            grads[1] = _add_at(dx, labels, g_dl)
            return grads

        return out, grad

    return stats


# -- dense --------------------------------------------------------------------------------
def dense_stats(u: tf.Tensor, x: tf.Tensor, w: tf.Tensor | None = None,
                m: tf.Tensor | None = None, normaliser: tf.Tensor | None = None,
                smooth: bool = True) -> list[tf.Tensor]:
    """``[L, log_z, S]`` for effective labels ``u`` (0 at the excluded classes);
    ``normaliser`` as in :func:`sparse_stats`. Without ``smooth``, ``S`` is not computed (0)."""
    if not taped():
        d, _, _, log_z = shifted(x, 1, normaliser, exps=False)
        s = _weighted_sum(d, w, m)[0] if smooth else tf.zeros_like(log_z)
        return [_dense_loss(u, d, log_z), log_z, s]
    extra = [t for t in (w, m) if t is not None]
    fn = _dense_fn(watched(u), w is not None, m is not None, w is not None and watched(w),
                   normaliser is not None, smooth)
    return list(fn(u, x, *extra, *([] if normaliser is None else [normaliser])))


def _dense_loss(u: tf.Tensor, d: tf.Tensor, log_z: tf.Tensor) -> tf.Tensor:
    # multiply_no_nan: a class with label 0 adds exactly 0, also where d is -inf
    return tf.reduce_sum(u, 1) * log_z - tf.reduce_sum(tf.math.multiply_no_nan(d, u), 1)


@functools.cache
def _dense_fn(label_grad: bool, weighted: bool, masked: bool, weight_grad: bool,
              normalised: bool = False, smooth: bool = True) -> Callable[..., Any]:
    """The differentiable :func:`dense_stats` of one variant (cached)."""

    @tf.custom_gradient
    def stats(u: tf.Tensor, x: tf.Tensor, *extra: tf.Tensor) -> Any:
        normaliser = extra[-1] if normalised else None
        extra = extra[:-1] if normalised else extra
        w = extra[0] if weighted else None
        m = extra[-1] if masked else None
        d, e, total, log_z = shifted(x, 1, normaliser)
        s, dz = _weighted_sum(d, w, m) if smooth else (tf.zeros_like(log_z), None)
        weight = tf.reduce_sum(u, 1)

        def grad(g_l: tf.Tensor, g_logz: tf.Tensor, g_s: tf.Tensor) -> list[Any]:
            # d/dx = p (sum(u) g_L + g_logz) - u g_L + v g_S;  d/du = (log_z - d) g_L
            g_l, g_logz, g_s = (_or_zeros(g, log_z) for g in (g_l, g_logz, g_s))
            g = tf.expand_dims(g_l, 1)
            dx = e * _zero_safe_scale(g_l * weight + g_logz, total) - u * g
            if smooth:
                dx = dx + _v_times(g_s, w, m)
            du = tf.math.multiply_no_nan(tf.expand_dims(log_z, 1) - d, g) if label_grad else None
            grads = [du, dx]
            if weighted:
                grads.append(_weight_grad(dz, g_s) if weight_grad and smooth else None)
            if masked:
                grads.append(None)
            if normalised:
                grads.append(None)
            return grads

        return [_dense_loss(u, d, log_z), log_z, s], grad

    return stats
