"""Our service against vLLM's own ceiling, on a real vLLM serving a real model.

The same GSM8K prompts, templates and budgets, two ways, alternated, ``--runs`` times:
(a) **direct**: a minimal async driver sends every item's probe → critique → refine chain
    straight to the server, all items at once (vLLM batches them; nothing else in the way), with
    the same truncation policy as the job (one retry at twice the budget);
(b) **service**: the same work as a job through our API and a real worker, the clock running
    from the POST that creates the job to the status that says it completed.
Reported: completion tokens/s of each (the server's own counter, so (b) counts what the job
made the server produce) and (b)/(a), medians. The prefix cache is reset before each pass, so
no pass reuses another's prompts.

    .venv/bin/python bench/real_vllm.py [--items 16] [--runs 3] [--max-tokens 96]

Needs `make vllm` (.venv-vllm and the converted model), Postgres and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import bench_stack  # noqa: E402
from cgd.local_vllm import VllmServer, start_vllm  # noqa: E402
from cgd.templates.builtin import get_template  # noqa: E402
from cgd.train.real_model import SERVED_NAME, ensure_real_model  # noqa: E402
from tests.conftest import data_rows, free_port  # noqa: E402
from tests.test_real_vllm import server_counters  # noqa: E402


def reset_cache(server: VllmServer) -> None:
    r = httpx.post(server.url.removesuffix("/v1") + "/reset_prefix_cache", timeout=60)
    r.raise_for_status()


async def direct(server: VllmServer, questions: list[str], max_tokens: int) -> float:
    """Wall seconds for every item's chain, all items in flight at once."""
    template = get_template("cgd")

    async def chat(http: aiohttp.ClientSession, messages: list[dict[str, str]]) -> str | None:
        budget = max_tokens
        for _ in range(2):  # as the job's retry_larger: once more at twice the budget
            body = {"model": server.model, "messages": messages, "temperature": 0.0,
                    "max_tokens": budget}  # fmt: skip
            async with http.post(f"{server.url}/chat/completions", json=body) as r:
                choice = (await r.json())["choices"][0]
            if choice["finish_reason"] != "length":
                return str(choice["message"]["content"])
            budget *= 2
        return None

    async def chain(http: aiohttp.ClientSession, q: str) -> None:
        initial = await chat(http, template.probe(q))
        if initial is None:
            return
        critique = await chat(http, template.critique(q, initial))
        if critique is None:
            return
        await chat(http, template.refine(q, initial, critique))

    timeout = aiohttp.ClientTimeout(total=None, sock_read=1800)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(chain(http, q) for q in questions))
    return time.perf_counter() - t0


def service(stack: Any, server: VllmServer, dataset_id: str, max_tokens: int, n: int) -> float:
    budget = {"base_url": server.url, "model": server.model, "temperature": 0.0,
              "max_tokens": max_tokens}  # fmt: skip
    with stack.client() as client:
        t0 = time.perf_counter()
        r = client.post(
            "/v1/jobs",
            json={"dataset_id": dataset_id, "student": budget, "teacher": budget,
                  "verifier": "math", "truncation": "retry_larger", "chunk_size": n},
        )  # fmt: skip
        r.raise_for_status()
        job_id = r.json()["id"]
        while True:
            status = client.get(f"/v1/jobs/{job_id}").json()
            if status["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - t0
        assert status["status"] == "completed", status
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96, help="per call (student, teacher)")
    args = parser.parse_args()
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # POST /reset_prefix_cache between passes
    model_dir = ensure_real_model()
    rows = data_rows("gsm8k_sample.jsonl")[: args.items]
    questions = [r["question"] for r in rows]
    log = Path(tempfile.mkdtemp()) / "vllm.log"
    print(f"starting vLLM for {SERVED_NAME} (log {log})", flush=True)
    with (
        start_vllm(model_dir, port=free_port(), served_name=SERVED_NAME, log=log) as server,
        bench_stack(free_port(), CGD_LLM_TIMEOUT_S="1800") as stack,
    ):
        stack.start("worker", log=Path(stack.env["CGD_HOME"]) / "worker.log")
        time.sleep(5)  # the worker's start-up is not part of a job
        with stack.client() as client:
            body = "\n".join(json.dumps(r) for r in rows).encode()
            ds = client.post("/v1/datasets", files={"file": ("gsm8k.jsonl", body)})
            ds.raise_for_status()
        ratios, direct_rates, service_rates = [], [], []
        for run in range(args.runs):
            rates = {}
            for way in ("direct", "service"):
                reset_cache(server)
                before = server_counters(server.url)
                if way == "direct":
                    seconds = asyncio.run(direct(server, questions, args.max_tokens))
                else:
                    seconds = service(stack, server, ds.json()["id"], args.max_tokens, args.items)
                made = (
                    server_counters(server.url)["generation_tokens_total"]
                    - before["generation_tokens_total"]
                )
                rates[way] = made / seconds
                print(
                    f"run {run + 1} {way:>7}: {made:.0f} completion tokens in "
                    f"{seconds:.1f}s = {rates[way]:.1f} tokens/s",
                    flush=True,
                )
            direct_rates.append(rates["direct"])
            service_rates.append(rates["service"])
            ratios.append(rates["service"] / rates["direct"])
            print(f"run {run + 1} service/direct = {ratios[-1]:.1%}", flush=True)
    print(
        f"median over {args.runs} runs: direct {statistics.median(direct_rates):.1f} tokens/s, "
        f"service {statistics.median(service_rates):.1f} tokens/s, "
        f"service/direct {statistics.median(ratios):.1%} (runs: "
        + ", ".join(f"{r:.1%}" for r in ratios)
        + ")"
    )


if __name__ == "__main__":
    main()
