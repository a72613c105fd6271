"""``tf.compat.v1`` signatures on every backend: see :mod:`xent.compat.v1.nn` and
:mod:`xent.compat.v1.losses`."""

from xent.compat.v1 import losses, nn

__all__ = ["losses", "nn"]
