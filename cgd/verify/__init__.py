"""Answer verifiers (``math``, ``choice``, ``exact``, ``none``) and a process pool for math-verify.

Grading follows docs/method.md (Evaluation): the response's final answer (last ``\\boxed{}``,
then fallbacks, see :mod:`cgd.answers`) is compared with the reference's final answer by
symbolic/numeric equivalence, numbers with a relative tolerance of 1e-4.

``math`` runs cheap, pure checks first in the caller: normalised string equality (units,
thousands separators and LaTeX formatting removed), numeric equality (scientific notation in its
common spellings, the percent rule), plain-code numerics (``np.arcsin(10/13)``, ``-1./3``; see
:mod:`cgd.verify.code`), and a small evaluator for constant expressions (surds, pi,
fractions, complex numbers) that also proves polynomial-like expressions different by evaluating
them at sample points.
Only what they cannot decide goes to math-verify (tests check that they agree with it on
MATH-500 pairs). math-verify's own timeouts use ``signal.alarm``, which only works in a
process's main thread (docs/reliability.md), and some sympy operations can run for minutes
inside C code where no signal gets through. So:

* :func:`check` is the pure, single-process entry point; it refuses to run math-verify outside
  the main thread.
* :class:`VerifierPool` runs math-verify in ``spawn``-ed worker processes, each item under a soft
  per-item timer in the worker and a hard deadline in the parent, which kills and replaces a
  stuck worker. It may be used from any thread and from asyncio.

The rules, with examples: docs/grader.md. ``cgd verify score`` (:mod:`cgd.verify.cli`) grades a
JSONL file from the command line.
"""

from cgd.verify.checks import (
    KINDS,
    REASON_CHOICE,
    REASON_ERROR,
    REASON_EVALUATED,
    REASON_EXACT,
    REASON_MATH_VERIFY,
    REASON_NO_ANSWER,
    REASON_NO_REFERENCE,
    REASON_NUMERIC,
    REASON_STRING,
    REASON_TIMEOUT,
    REASON_UNPARSED,
    REASON_UNVERIFIED,
    REASON_WORKER_DIED,
    TEST_KINDS,
    Verdict,
    check,
    fast_check,
)
from cgd.verify.checks import _MathJob as _MathJob  # for tests
from cgd.verify.checks import _run_job as _run_job  # for tests
from cgd.verify.evaluate import constant_value
from cgd.verify.normalize import RELATIVE_TOLERANCE, normalize_answer, parse_number
from cgd.verify.pool import VerifierPool

__all__ = [
    "KINDS",
    "REASON_CHOICE",
    "REASON_ERROR",
    "REASON_EVALUATED",
    "REASON_EXACT",
    "REASON_MATH_VERIFY",
    "REASON_NO_ANSWER",
    "REASON_NO_REFERENCE",
    "REASON_NUMERIC",
    "REASON_STRING",
    "REASON_TIMEOUT",
    "REASON_UNPARSED",
    "REASON_UNVERIFIED",
    "REASON_WORKER_DIED",
    "RELATIVE_TOLERANCE",
    "Verdict",
    "VerifierPool",
    "TEST_KINDS",
    "check",
    "constant_value",
    "fast_check",
    "normalize_answer",
    "parse_number",
]
