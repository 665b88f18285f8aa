"""Serving in-process: :func:`run_simulator`, and :func:`serve` until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from cgd.simulator.app import build_app
from cgd.simulator.config import READY_PREFIX, SimConfig
from cgd.simulator.state import STATE, SimState

log = logging.getLogger("cgd.simulator")


@dataclass(frozen=True)
class RunningSimulator:
    url: str  # http://host:port
    app: web.Application

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL (…/v1)."""
        return f"{self.url}/v1"

    @property
    def state(self) -> SimState:
        return self.app[STATE]


@asynccontextmanager
async def run_simulator(config: SimConfig) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator in the running event loop (port 0 picks a free port)."""
    app = build_app(config)
    # handler_cancellation: a request whose client went away stops holding its slot, as in vLLM.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=4096, shutdown_timeout=2.0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield RunningSimulator(url=f"http://{host}:{port}", app=app)
    finally:
        await runner.cleanup()


async def serve(config: SimConfig) -> None:
    """Serve until SIGINT/SIGTERM; print the ready line once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_simulator(config) as sim:
        log.info(
            "simulator ready: %d slots, %.3fs latency (capacity %.0f calls/s)",
            config.slots,
            config.latency_s,
            config.slots / config.latency_s if config.latency_s else float("inf"),
        )
        print(f"{READY_PREFIX}{sim.url}", flush=True)
        await stop.wait()
        log.info("simulator stopping")
