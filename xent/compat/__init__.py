"""TensorFlow-signature twins of the xent functions, for code moving from TF1 to TF2.

``xent.compat.v1.nn`` mirrors ``tf.compat.v1.nn`` (named arguments only for the cross
entropies, ``dim``, no gradient into labels); ``xent.compat.v2.nn`` mirrors
``tf.compat.v2.nn`` / TF2's ``tf.nn`` (``(labels, logits, axis=-1, name=None)``, gradient into
labels). Both run on every backend; ``name`` is accepted for compatibility and ignored.
"""

from xent.compat import v1, v2

__all__ = ["v1", "v2"]
