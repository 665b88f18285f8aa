"""Throughput of LLMClient against the SIMULATED server (a quick check, not a test).

Starts ``python -m cgd.simulator`` with K slots and L seconds latency (capacity K/L calls/s),
fires N probe calls through one LLMClient with a bounded in-flight window, and prints calls/s,
the share of capacity reached, client CPU per call, peak client RSS, simulator CPU share and the
peak in-flight both sides saw. The machine is shared: run it a few times and take the median.

    .venv/bin/python bench/llm_client_throughput.py [--calls 5000] [--slots 256] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cgd.llm_client import EndpointConfig, LLMClient  # noqa: E402
from cgd.simulator import SimulatorProcess  # noqa: E402
from cgd.templates import get_template  # noqa: E402

GSM8K = ROOT / "tests" / "data" / "gsm8k_train.jsonl"


def questions(n: int) -> list[str]:
    """Real GSM8K questions when available (made-up ones otherwise), cycled to n."""
    base = [f"Synthetic question number {i}?" for i in range(100)]
    if GSM8K.exists():
        with GSM8K.open("rb") as fh:
            base = [
                orjson.loads(line)["question"] for _, line in zip(range(1000), fh, strict=False)
            ]
    return [base[i % len(base)] for i in range(n)]


def process_cpu_s(pid: int) -> float:
    """User+system CPU seconds of another process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fire(base_url: str, qs: list[str], inflight: int) -> tuple[float, LLMClient, list[Any]]:
    template = get_template("cgd")
    endpoint = EndpointConfig(base_url=base_url, model="student", max_tokens=1024)
    client = LLMClient(max_inflight_per_endpoint=inflight, timeout_s=60, max_attempts=3)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(client.chat(endpoint, template.probe(q)) for q in qs), return_exceptions=True
    )
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed, client, results


async def sim_stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/sim/stats") as resp:
        return await resp.json()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--slots", type=int, default=256)
    p.add_argument("--latency", type=float, default=0.5)
    p.add_argument("--inflight", type=int, default=256)
    p.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="simulator latency jitter: 0 makes every wave of calls finish at the same instant",
    )
    ns = p.parse_args()
    capacity = ns.slots / ns.latency
    qs = questions(ns.calls)
    args = ["--port", "0", "--slots", str(ns.slots), "--latency", str(ns.latency)]
    args += ["--latency-jitter", str(ns.jitter)]
    with SimulatorProcess([*args, "--log-level", "WARNING"]) as sim:
        sim_cpu0 = process_cpu_s(sim.proc.pid)
        cpu0 = time.process_time()
        elapsed, client, results = asyncio.run(fire(sim.base_url, qs, ns.inflight))
        cpu = time.process_time() - cpu0
        sim_cpu = process_cpu_s(sim.proc.pid) - sim_cpu0
        server = asyncio.run(sim_stats(sim.url))
    errors = [r for r in results if isinstance(r, BaseException)]
    ok = len(results) - len(errors)
    rate = ok / elapsed
    stats = next(iter(client.stats().values()))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"simulator: K={ns.slots} L={ns.latency}s (jitter ±{100 * ns.jitter:.0f}%) "
        f"capacity={capacity:.0f} calls/s"
    )
    print(f"calls: {ok} ok, {len(errors)} failed in {elapsed:.2f}s")
    print(f"throughput: {rate:.1f} calls/s = {100 * rate / capacity:.1f}% of capacity")
    print(
        f"client CPU: {1000 * cpu / len(results):.3f} ms/call "
        f"({100 * cpu / elapsed:.0f}% of a core)"
    )
    print(f"client peak RSS: {rss_mb:.0f} MiB")
    print(f"simulator CPU: {100 * sim_cpu / elapsed:.0f}% of a core")
    print(
        f"peak in-flight: client {stats.max_inflight} (limit {ns.inflight}), "
        f"simulator {server['max_inflight']}, running {server['max_running']} (K={ns.slots})"
    )
    if errors:
        print(f"first error: {errors[0]!r}")


if __name__ == "__main__":
    main()
