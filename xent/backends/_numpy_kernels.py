"""Row kernels of the NumPy backend: one block of rows, classes along axis 1.

Every kernel takes ``x`` of shape ``[rows, num_classes]`` in the compute dtype (float32 or
float64), C-contiguous, and never writes to it (it may be the caller's array). Scratch
arrays come from the caller, so a kernel allocates only per-row vectors.

Accuracy: with ``m = max(x)`` at index ``k`` and ``s' = sum_{c != k} exp(x_c - m)``,

    logsumexp(x) - x_c = (m - x_c) + log1p(s')

Both terms are >= 0, so the loss ``sum_c y_c ((m - x_c) + log1p(s'))`` is a sum of
non-negative terms for non-negative labels: accurate to a few eps *relative*, also for
confident predictions whose loss is far below eps (where ``log(sum exp)`` rounds to 0).
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray

#: Classes per BLAS dot in :func:`row_dot`. One ``sdot`` over ``n`` terms accumulates about
#: ``n / 32`` terms per lane (error ~``n / 32`` eps: 40 eps at 128k classes); blocks of about
#: 1024, then a pairwise sum of the blocks, stay within a few eps like ``np.add.reduce``, and
#: run 1.5-2.5x faster than it.
BLOCK = 1024
_ones: dict[np.dtype, Array] = {}
_splits: dict[int, tuple[int, int]] = {}


def _split(classes: int) -> tuple[int, int]:
    """``(block, head)``: the divisor of ``classes`` in [512, 2048] nearest ``BLOCK`` (else
    ``BLOCK``), and the classes that whole blocks cover (the rest is one more dot)."""
    found = _splits.get(classes)
    if found is None:
        divisors = [b for b in range(BLOCK // 2, 2 * BLOCK + 1) if classes % b == 0]
        block = min(divisors, key=lambda b: abs(b - BLOCK)) if divisors else BLOCK
        if len(_splits) > 256:
            _splits.clear()
        found = _splits[classes] = (block, classes - classes % block)
    return found


def row_dot(a: Array, b: Array) -> Array:
    """``sum_c a_c b_c`` per row of ``a`` (``[rows, C]``, C-contiguous or a row slice of such);
    ``b`` is ``[rows, C]`` likewise, or a ``[C]`` vector shared by every row."""
    classes = a.shape[1]
    if classes <= 2 * BLOCK:
        return np.vecdot(a, b)
    block, head = _split(classes)
    shape = (head // block, block)
    total = np.add.reduce(np.vecdot(a[:, :head].reshape(a.shape[0], *shape),
                                    b[..., :head].reshape(b.shape[:-1] + shape)), axis=1)
    if head < classes:
        total += np.vecdot(a[:, head:], b[..., head:])
    return total


def row_sum(a: Array) -> Array:
    """``sum_c a_c`` per row of ``a`` (``[rows, C]``): :func:`row_dot` with ones."""
    ones = _ones.get(a.dtype)
    if ones is None:
        ones = _ones[a.dtype] = np.ones(2 * BLOCK, a.dtype)
    classes = a.shape[1]
    if classes <= 2 * BLOCK:
        return np.vecdot(a, ones[:classes])
    block, head = _split(classes)
    total = np.add.reduce(np.vecdot(a[:, :head].reshape(a.shape[0], -1, block),
                                    ones[:block]), axis=1)
    if head < classes:
        total += np.vecdot(a[:, head:], ones[: classes - head])
    return total


try:  # NumPy 2 internals: the buffer size of ufunc calls, set like np.errstate
    from numpy._core._ufunc_config import _extobj_contextvar  # type: ignore[attr-defined]
    from numpy._core.umath import _make_extobj

    _row_extobjs: dict[int, object] = {}

    def by_rows(ufunc: np.ufunc, a: Array, b: Array, out: Array) -> Array:
        """``ufunc(a, b, out=out)`` for ``[rows, C]`` ``a`` and a broadcast ``b`` (a column
        ``[rows, 1]`` or a row ``[C]``).

        NumPy merges the rows of such a call into inner loops of its buffer size (8192) by
        copying the broadcast operand into a buffer, which costs a third to a half of the
        call for 512 <= C < 8192: a buffer of one row keeps one row per inner loop (errors
        ignored, as inside ``quiet``)."""
        size = a.shape[1] // 16 * 16
        if not 512 <= size < 8192:
            return ufunc(a, b, out=out)
        extobj = _row_extobjs.get(size)
        if extobj is None:
            extobj = _row_extobjs[size] = _make_extobj(all="ignore", bufsize=size)
        token = _extobj_contextvar.set(extobj)
        try:
            return ufunc(a, b, out=out)
        finally:
            _extobj_contextvar.reset(token)

except ImportError:  # other NumPy versions

    def by_rows(ufunc: np.ufunc, a: Array, b: Array, out: Array) -> Array:
        """``ufunc(a, b, out=out)`` for ``[rows, C]`` ``a`` and a broadcast ``b``."""
        return ufunc(a, b, out=out)


_starts: dict[tuple[int, int], Array] = {}


def row_starts(x: Array) -> Array:
    """The flat index of each row's first element in ``[rows, C]`` ``x`` (cached)."""
    key = x.shape
    starts = _starts.get(key)
    if starts is None:
        if len(_starts) > 64:
            _starts.clear()
        starts = _starts[key] = np.arange(0, x.size, x.shape[1])
    return starts


def lead(x: Array) -> tuple[Array, Array]:
    """Flat index of each row's maximum (first NaN if any) and the maximum itself."""
    flat = x.argmax(axis=1)
    flat += row_starts(x)
    return flat, x.ravel().take(flat)


def _log1p_rest(x: Array, flat: Array, m: Array, scratch: Array) -> Array:
    """``log1p(sum_{c != k} exp(x_c - m))`` per row: logsumexp(x) - m without rounding 1 + s'."""
    e = by_rows(np.subtract, x, m[:, None], scratch)
    np.exp(e, out=e)
    e.ravel()[flat] = 0.0  # drop the leading exp(0) = 1: log1p adds it back exactly
    return np.log1p(row_sum(e))


def softmax(x: Array, out: Array) -> None:
    by_rows(np.subtract, x, x.max(axis=1)[:, None], out)
    np.exp(out, out=out)
    by_rows(np.divide, out, row_sum(out)[:, None], out)


def log_softmax(x: Array, out: Array, scratch: Array) -> None:
    flat, m = lead(x)
    rest = _log1p_rest(x, flat, m, scratch)
    rest += m - m  # +inf - +inf = NaN: a row with a +inf logit is NaN throughout
    by_rows(np.subtract, x, m[:, None], out)
    by_rows(np.subtract, out, rest[:, None], out)  # (x - m) - log1p(s'): exact for confident rows


def sparse_loss(labels: Array, x: Array, scratch: Array) -> Array:
    """``(m - x[label]) + log1p(s')`` per row; labels already checked to be in range."""
    flat, m = lead(x)
    rest = _log1p_rest(x, flat, m, scratch)
    picked = x.ravel().take(np.add(labels, row_starts(x), dtype=np.intp, casting="unsafe"))
    loss = (m - picked) + rest
    loss += m - m  # NaN for a row with a +inf logit (its leading term was dropped above)
    return loss


def dense_loss(y: Array, x: Array, scratch: Array) -> Array:
    """``sum_c y_c (m - x_c) + log1p(s') * sum_c y_c`` per row, 0 for ``y_c == 0`` classes.

    ``y`` is in the dtype of ``x``. BLAS dots do the weighted sums: no product array."""
    flat, m = lead(x)
    d = by_rows(np.subtract, x, m[:, None], scratch)  # x - m <= 0
    below = row_dot(y, d)  # sum_c y_c (x_c - m) <= 0, before d becomes exp(d)
    np.exp(d, out=d)
    d.ravel()[flat] = 0.0  # drop the leading exp(0) = 1: log1p adds it back exactly
    rest = np.log1p(row_sum(d))
    loss = rest * row_sum(y) - below  # two non-negative terms
    total = np.add.reduce(loss)
    if total != total:  # NaN somewhere: maybe label 0 times an infinite gap
        _fix_masked_rows(loss, y, x, m, rest)
    return loss


def _fix_masked_rows(loss: Array, y: Array, x: Array, m: Array, rest: Array) -> None:
    """Recompute rows where ``0 * -inf`` (label 0 at a masked, -inf, class) made NaN.

    Only rows with a finite maximum can be fixed: NaN or +inf logits, or a row masked
    everywhere, stay NaN, as do NaN labels."""
    rows = np.flatnonzero(np.isnan(loss) & np.isfinite(m))
    if rows.size:
        yr = y[rows]
        gap = (m[rows, None] - x[rows]) + rest[rows, None]  # logsumexp - x, >= 0
        loss[rows] = np.add.reduce(np.where(yr == 0, 0, yr * gap), axis=1)
