"""xent: softmax cross-entropy that gives the same answer on every framework.

One API for NumPy, PyTorch, TensorFlow (TF2 eager, ``tf.function`` and TF1 graphs) and
JAX, dispatched by the type of ``logits``. ``import xent`` imports no framework.
"""

from xent import backends, compat
from xent._api import (
    log_softmax,
    softmax,
    softmax_cross_entropy_with_logits,
    sparse_softmax_cross_entropy_with_logits,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "backends",
    "compat",
    "log_softmax",
    "softmax",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
    "use_backend",
    "__version__",
]
