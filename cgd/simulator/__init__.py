"""A SIMULATED OpenAI-compatible LLM server (vLLM-like) for tests, benchmarks and dry runs.

Nothing here runs a model. The simulator answers ``POST /v1/chat/completions`` in vLLM's response
shape with deterministic, made-up text, so that the generation pipeline can be exercised end to
end without a GPU:

* **Capacity.** ``slots`` requests run at once; each holds its slot for ``latency_s`` seconds and
  the rest wait FIFO, as vLLM queues (it has no admission control, so nothing is rejected). The
  capacity is therefore ``slots / latency_s`` calls per second.
* **Stages.** The request's message structure (see :mod:`cgd.templates`) tells probe, critique,
  refine and solve (the ``teacher_solution`` call) apart. With ``--dataset`` files it knows
  each question's reference final answer: a probe is right with probability ``accuracy`` (a
  stable hash of model, question and request seed), a
  critique's verdict is right iff the student's last ``\\boxed{}`` matches the reference, and a
  refine or solve always ends in ``\\boxed{<reference>}``.
* **Faults.** 429 (with ``Retry-After``), 500, hangs, truncation, dropped connections and poison
  substrings, settable on the command line and at runtime through ``POST /sim/config``, so a test
  can start a 429 storm in the middle of a job.
* **Observability.** ``GET /sim/stats`` (counts, peak concurrency, duplicates, the sampling
  parameters of the last requests), ``POST /sim/reset``.

Run it with ``python -m cgd.simulator --port 8001 --slots 256 --latency 0.5 --dataset F``; it prints
``simulator listening on http://HOST:PORT`` when ready. In-process: ``async with
run_simulator(SimConfig(...)) as sim: sim.base_url``.
"""

from cgd.simulator.answers import (
    Answerer,
    ParsedRequest,
    apply_stop,
    classify,
    count_tokens,
    cut_to_tokens,
    final_answer,
    last_boxed,
    load_references,
    normalise_answer,
    wrong_answer,
)
from cgd.simulator.app import (
    build_app,
    chat_completions,
    get_config,
    get_stats,
    list_models,
    post_config,
    post_reset,
)
from cgd.simulator.cli import config_from_args, main
from cgd.simulator.config import DEFAULT_MODEL, READY_PREFIX, STARTUP_ONLY, SimConfig, Stage
from cgd.simulator.process import SimulatorProcess
from cgd.simulator.server import RunningSimulator, run_simulator, serve
from cgd.simulator.state import STATE, SimState, SimStats

__all__ = [
    "Answerer",
    "DEFAULT_MODEL",
    "ParsedRequest",
    "READY_PREFIX",
    "RunningSimulator",
    "STARTUP_ONLY",
    "STATE",
    "SimConfig",
    "SimState",
    "SimStats",
    "SimulatorProcess",
    "Stage",
    "apply_stop",
    "build_app",
    "chat_completions",
    "classify",
    "config_from_args",
    "count_tokens",
    "cut_to_tokens",
    "final_answer",
    "get_config",
    "get_stats",
    "last_boxed",
    "list_models",
    "load_references",
    "main",
    "normalise_answer",
    "post_config",
    "post_reset",
    "run_simulator",
    "serve",
    "wrong_answer",
]
