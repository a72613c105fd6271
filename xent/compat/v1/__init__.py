"""``tf.compat.v1`` signatures on every backend: see :mod:`xent.compat.v1.nn`."""

from xent.compat.v1 import nn

__all__ = ["nn"]
