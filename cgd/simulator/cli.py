"""The command line: ``python -m cgd.simulator`` (see :mod:`cgd.simulator.__main__`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from pydantic import ValidationError

from cgd.simulator.config import SimConfig
from cgd.simulator.server import serve


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cgd.simulator",
        description="SIMULATED OpenAI-compatible (vLLM-like) server for tests and benchmarks.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--slots", type=int, default=64, help="concurrent requests (K)")
    p.add_argument("--latency", type=float, default=0.5, help="seconds per request (L)")
    p.add_argument("--latency-jitter", type=float, default=0.0, help="L*(1±jitter), uniform")
    p.add_argument("--dataset", action="append", default=[], help="JSONL with references")
    p.add_argument("--served-model", action="append", default=[], help="accepted model names")
    p.add_argument("--accuracy", type=float, default=0.5)
    p.add_argument("--no-verdict-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate-429", type=float, default=0.0)
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds")
    p.add_argument("--rate-500", type=float, default=0.0)
    p.add_argument("--rate-hang", type=float, default=0.0)
    p.add_argument("--hang-s", type=float, default=3600.0)
    p.add_argument("--rate-truncate", type=float, default=0.0)
    p.add_argument("--rate-drop", type=float, default=0.0)
    p.add_argument("--poison", action="append", default=[], help="substring that always 500s")
    p.add_argument("--fault-stage", action="append", default=[], help="limit faults to a stage")
    p.add_argument("--fault-model", action="append", default=[], help="limit faults to a model")
    p.add_argument("--api-key", default=None, help="require this bearer token")
    p.add_argument("--record-last", type=int, default=100)
    p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    p.add_argument("--max-waiting", type=int, default=None, help="429 past this queue length")
    p.add_argument("--rpm", type=int, default=None, help="requests per minute (x-ratelimit-*)")
    p.add_argument("--reject-param", action="append", default=[], help="400 on this request key")
    p.add_argument("--reasoning", action="store_true", help="answers carry reasoning_content")
    p.add_argument("--batch-delay", type=float, default=1.0, help="seconds a batch takes")
    p.add_argument("--log-level", default="INFO")
    return p


def config_from_args(ns: argparse.Namespace) -> SimConfig:
    return SimConfig(
        host=ns.host,
        port=ns.port,
        slots=ns.slots,
        latency_s=ns.latency,
        latency_jitter=ns.latency_jitter,
        datasets=[Path(d) for d in ns.dataset],
        served_models=ns.served_model,
        accuracy=ns.accuracy,
        no_verdict_rate=ns.no_verdict_rate,
        seed=ns.seed,
        rate_429=ns.rate_429,
        retry_after_s=ns.retry_after,
        rate_500=ns.rate_500,
        rate_hang=ns.rate_hang,
        hang_s=ns.hang_s,
        rate_truncate=ns.rate_truncate,
        rate_drop=ns.rate_drop,
        poison=ns.poison,
        fault_stages=ns.fault_stage,
        fault_models=ns.fault_model,
        api_key=ns.api_key,
        record_last=ns.record_last,
        serve_metrics=not ns.no_metrics,
        max_waiting=ns.max_waiting,
        rpm=ns.rpm,
        reject_params=ns.reject_param,
        reasoning=ns.reasoning,
        batch_delay_s=ns.batch_delay,
    )


def main(argv: list[str] | None = None) -> None:
    ns = _parser().parse_args(argv)
    logging.basicConfig(
        level=ns.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(ns)
    except ValidationError as exc:
        raise SystemExit(f"invalid simulator settings:\n{exc}") from None
    asyncio.run(serve(config))
