"""``tf.compat.v2`` (TF2) signatures on every backend: see :mod:`xent.compat.v2.nn`."""

from xent.compat.v2 import nn

__all__ = ["nn"]
