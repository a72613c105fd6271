"""The conformance suite: every backend, in every execution mode, against an exact reference.

- :mod:`~xent.conformance.reference`: the exact values (mpmath, 50 digits) of softmax,
  log_softmax, the dense and sparse loss and both gradients, with DESIGN section 2's
  masked-class and NaN conventions;
- :mod:`~xent.conformance.cases`: the named, deterministic case catalog;
- :mod:`~xent.conformance.metric`: the error metric and the tolerance table;
- :mod:`~xent.conformance.runner`: runs a case on a backend in a mode through the public
  functions, and compares backends pairwise;
- :mod:`~xent.conformance.report` and :mod:`~xent.conformance.cli`: ``xent conformance``.

Needs ``mpmath`` (in the ``test`` extra).

>>> import xent
>>> from xent.conformance import evaluate
>>> records = evaluate("seed", "float32", xent.backends.get("numpy"), "eager").records
>>> sorted({r.status for r in records})
['n/a', 'pass']
"""

from xent.conformance.cases import CATALOG, DTYPES, case_names
from xent.conformance.runner import Record, evaluate, run_all

__all__ = ["CATALOG", "DTYPES", "Record", "case_names", "evaluate", "run_all"]
