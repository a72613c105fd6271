"""PyTorch-signature twins (``torch.nn.functional``, ``torch.nn.CrossEntropyLoss``) that run
on every backend: ``from xent.compat.torch.nn import functional as F``."""

from xent.compat.torch import nn

__all__ = ["nn"]
