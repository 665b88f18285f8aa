"""The process-wide cap on completed calls not yet committed (``UnwrittenGate``): a call waits
at the cap and goes once a flush lands. The crash bound it gives is tested end to end in
``tests/test_jobs.py::test_sigkill_worker_mid_job``."""

from __future__ import annotations

import asyncio

from cgd.generation.pipeline import UnwrittenGate


def test_calls_wait_at_the_cap_until_a_flush_lands() -> None:
    async def scenario() -> None:
        gate = UnwrittenGate(limit=3)
        gate.add(2)
        await asyncio.wait_for(gate.room(), 1)  # below the cap: no wait
        gate.add(1)
        waiter = asyncio.create_task(gate.room())
        await asyncio.sleep(0.05)
        assert not waiter.done()  # at the cap: the next call waits
        gate.done(1)
        await asyncio.wait_for(waiter, 1)  # a flush landed: it goes
        assert gate.count == 2

    asyncio.run(scenario())
