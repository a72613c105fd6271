"""Keras-signature loss twins that run on every backend: ``from xent.compat.keras import
losses``."""

from xent.compat.keras import losses

__all__ = ["losses"]
