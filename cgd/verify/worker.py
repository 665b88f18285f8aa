"""The verifier worker process: warm-up and the job loop (a ``spawn`` target)."""

from __future__ import annotations

import logging
import multiprocessing.connection
import signal
import time

from cgd.verify.checks import _load_math_verify, _MathJob, _run_job

logger = logging.getLogger("cgd.verify")

# One answer of each common shape. ANTLR's parser builds its prediction (DFA) cache lazily, so a
# cold worker parses ~2x slower; paying ~1 s of CPU once per worker start is worth it.
_WARM_UP_ANSWERS = (
    r"\frac{1}{2}",
    r"(x+1)^2",
    r"x^3 - 2x^2 + 5",
    r"\left( 2, \frac{\pi}{3} \right)",
    r"[-1, 4)",
    r"(-\infty, 2) \cup (3, \infty)",
    r"\{1, -2\}",
    r"3, 5",
    r"y = 2x - 1",
    r"\begin{pmatrix} 1 \\ -2 \end{pmatrix}",
    r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
    r"2\sqrt{3} + 1",
    r"\sin x",
    r"\text{yes}",
    r"12_3",
    r"3 \pm \sqrt{2}",
    r"\frac{a+b}{2}",
    r"-\frac{\sqrt{5}}{5}",
    r"1 - 2i",
    r"x \in [0, 1]",
    r"10^\circ",
    r"p^2 q",
)


def _warm_up() -> None:
    """Parse and compare one answer of each shape (see _WARM_UP_ANSWERS)."""
    started = time.monotonic()
    answers = _WARM_UP_ANSWERS
    for pred, gold in zip(answers, answers[1:] + answers[:1], strict=True):
        _run_job(_MathJob("math", pred, gold), 30.0)
    logger.debug("verifier worker warmed up in %.2fs", time.monotonic() - started)


_MSG_READY = "ready"
_MSG_RESULT = "result"


def _worker_main(
    conn: multiprocessing.connection.Connection, soft_timeout_s: float, enable_test_kinds: bool
) -> None:
    """Worker loop: receive a chunk of jobs, send one result per job, in order.

    One message per result lets the parent know which job is running (the one after the last
    result), so its hard deadline is per job, not per chunk.
    """
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _load_math_verify()
    _warm_up()
    conn.send((_MSG_READY,))
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for job in chunk:
            correct, reason = _run_job(_MathJob(*job), soft_timeout_s, enable_test_kinds)
            conn.send((_MSG_RESULT, correct, reason))
