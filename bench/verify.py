"""Verifier throughput: every MATH-500 reference through VerifierPool, 1 and 2 worker processes.

Responses: each reference boxed (must be correct) plus, for each, the next reference whose answer
differs (must be incorrect), i.e. 1,000 verifications a run. Cheap checks decide most of them in
the caller; the rest (surds, tuples, polynomials vs numbers...) go to math-verify in the workers.

"realistic mix": 1,000 answers in the forms models give them (bench/texts.py): 300-1,500
characters of varied text before the answer; boxed right or wrong, the same answer written
differently, an intermediate box before the final one, no box ("The answer is …"), GSM8K's
``####``, or no answer at all. It also reports how many verdicts match the intended one.

Reports, as medians over ``--runs`` fresh pools (the machine is shared and noisy):
* verifications/s (wall clock) and that divided by the worker count ("per core");
* verifications per CPU-second (parent + workers, from /proc), a per-core figure that other
  load on the machine disturbs less;
* the same for the math-verify-only subset, the slow path. Target: >= 150/s per core.

    .venv/bin/python bench/verify.py [--runs 3] [--processes 1 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texts import TextGen, answer_mix  # noqa: E402

from cgd.answers import reference_answer  # noqa: E402
from cgd.verify import VerifierPool, fast_check, normalize_answer  # noqa: E402

DATA = ROOT / "cgd" / "data" / "math500.jsonl"
TARGET_PER_CORE = 150.0
Item = tuple[str, str, str]


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    n: int

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.n / self.cpu_seconds


def load_items() -> tuple[list[Item], list[Item], list[tuple[Item, bool | None]]]:
    """(all 1,000 items, the subset the cheap checks cannot decide, the realistic mix)."""
    with DATA.open(encoding="utf-8") as f:
        references = [json.loads(line)["answer"] for line in f if line.strip()]
    finals = [reference_answer(r) or "" for r in references]
    right = [
        ("math", f"So the answer is \\boxed{{{f}}}.", r)
        for f, r in zip(finals, references, strict=True)
    ]
    wrong = []
    for i, reference in enumerate(references):
        other = next(
            finals[(i + k) % len(finals)]
            for k in range(1, len(finals))
            if normalize_answer(finals[(i + k) % len(finals)]) != normalize_answer(finals[i])
        )
        wrong.append(("math", f"So the answer is \\boxed{{{other}}}.", reference))
    items = right + wrong
    slow = [item for item in items if fast_check(*item) is None]
    gen = TextGen(seed=1)
    realistic = []
    for i, reference in enumerate(references):
        for _ in (0, 1):
            other = wrong[i][1].split("boxed{", 1)[1].rsplit("}", 1)[0]
            text, expected = answer_mix(finals[i], other, gen)
            realistic.append((("math", text, reference), expected))
    return items, slow, realistic


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of processes, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # Fields after the ")" that closes the command name; utime, stime are 14th, 15th.
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def measure(items: list[Item], processes: int, expected: list[bool | None] | None = None) -> Run:
    """One run on a fresh pool (no state carried between runs), start-up excluded."""
    with VerifierPool(processes=processes, timeout_s=10.0) as pool:
        if not pool.wait_ready(120):
            raise RuntimeError("verifier workers did not start")
        pids = [os.getpid(), *pool.worker_pids()]
        cpu0, t0 = cpu_seconds(pids), time.perf_counter()
        verdicts = pool.verify_many(items)
        elapsed, cpu1 = time.perf_counter() - t0, cpu_seconds(pids)
        if pool.worker_pids() != pids[1:]:
            raise RuntimeError("a worker was replaced mid-run; CPU figures would be wrong")
    if expected is not None:
        agree = sum(v.correct == e for v, e in zip(verdicts, expected, strict=True))
        print(f"  realistic mix: {agree}/{len(items)} verdicts as intended")
    undecided = sum(v.correct is None for v in verdicts)
    if undecided:
        logging.warning("%d verifications undecided (timeouts?)", undecided)
    return Run(elapsed, cpu1 - cpu0, len(items))


def report(label: str, items: list[Item], processes: int, runs: int) -> float:
    results = [measure(items, processes) for _ in range(runs)]
    rate = statistics.median(r.rate for r in results)
    per_cpu = statistics.median(r.per_cpu_second for r in results)
    print(
        f"{label:<18} processes={processes}  n={len(items):<5} "
        f"{rate:8.1f} verif/s  {rate / processes:8.1f} /s per core  "
        f"{per_cpu:8.1f} per CPU-second   runs: " + ", ".join(f"{r.rate:.0f}" for r in results)
    )
    return rate / processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    items, slow, realistic = load_items()
    print(f"MATH-500: {len(items)} verifications, {len(slow)} need math-verify")
    mix = [item for item, _ in realistic]
    for p in args.processes:
        report("realistic mix", mix, p, args.runs)
    measure(mix, 1, [e for _, e in realistic])
    print(f"medians of {args.runs} runs, each on a fresh pool")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    worst = min(report("all (mix)", items, p, args.runs) for p in args.processes)
    for p in args.processes:
        report("math-verify only", slow, p, args.runs)
    verdict = "meets" if worst >= TARGET_PER_CORE else "MISSES"
    print(f"mix: {worst:.1f}/s per core at worst, {verdict} the >= {TARGET_PER_CORE:.0f}/s target")


if __name__ == "__main__":
    main()
