r"""TF1 -> TF2 migration: the mapping as data, and the source rewriter behind
``xent map`` and ``xent migrate``.

>>> from xent.migration import migrate_source
>>> print(migrate_source(
...     "import tensorflow as tf\n"
...     "loss = tf.nn.softmax_cross_entropy_with_logits(y_hat, y_true)\n"
...     "sess = tf.Session()\n"
...     "print(sess.run(loss))\n").after)
import tensorflow as tf
loss = tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(y_true), logits=y_hat)
print(loss.numpy())
<BLANKLINE>

The rewriter needs ``libcst`` (``pip install 'xent[migrate]'``), imported on first use:
``import xent`` and ``xent map`` do without it.
"""

from __future__ import annotations

from typing import Any

from xent.migration.mapping import ROWS, Row
from xent.migration.report import Finding

__all__ = ["ROWS", "Finding", "Migrated", "Row", "SourceError", "migrate_source"]

_LAZY = {"Migrated", "SourceError", "migrate_source"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from xent.migration import source

        return getattr(source, name)
    raise AttributeError(f"module 'xent.migration' has no attribute {name!r}")
