"""Framework twins: other frameworks' signatures and meaning, on every backend.

Change one import and a script's loss moves to another framework, its meaning intact:

- ``xent.compat.v1`` / ``v2``: ``tf.compat.v1.nn`` / ``tf.nn`` (TF1 -> TF2 migration), and
  ``xent.compat.v1.losses`` (``tf.compat.v1.losses``);
- ``xent.compat.torch.nn``: ``torch.nn.functional`` (``softmax``, ``log_softmax``,
  ``cross_entropy``) and ``torch.nn.CrossEntropyLoss``;
- ``xent.compat.optax``: ``softmax_cross_entropy``, ``..._with_integer_labels``,
  ``smooth_labels``; ``xent.compat.jax.nn``: ``softmax``, ``log_softmax``;
- ``xent.compat.keras.losses``: ``categorical_crossentropy``,
  ``sparse_categorical_crossentropy`` and their classes.

Each twin is an adapter onto the core (``xent.softmax_cross_entropy_with_logits`` and its
options): it translates a signature and a framework's conventions (denominators, empty
means, shapes) and computes nothing of its own. ``name`` / ``scope`` arguments are
accepted for compatibility and ignored. No twin imports a framework.
"""

from xent.compat import jax, keras, optax, torch, v1, v2

__all__ = ["jax", "keras", "optax", "torch", "v1", "v2"]
