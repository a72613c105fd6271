"""JAX-signature twins (``jax.nn.softmax``, ``jax.nn.log_softmax``) that run on every
backend: ``from xent.compat.jax import nn``."""

from xent.compat.jax import nn

__all__ = ["nn"]
