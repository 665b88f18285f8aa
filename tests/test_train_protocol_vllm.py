"""The evaluation protocol on the real vLLM (issue 23, departure 4): the served generator marks
budget cut-offs (``finish_reason == "length"``) exactly where transformers does, and a model
without a chat template stops at the base-model stop strings on both. Runs where the vLLM
virtualenv and the converted real model exist (``make vllm``), like tests/test_real_vllm.py."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

pytestmark = [pytest.mark.real, pytest.mark.integration, pytest.mark.slow]

PROBLEMS = [
    "Reply with the single word: yes.",
    "What is 2 + 3? Put the final answer in \\boxed{}.",
    "Explain in detail, step by step, how to compute 17 * 23.",
]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Any, Path]]:
    from cgd.local_vllm import VllmError, free_port, start_vllm, vllm_python
    from cgd.train.real_model import default_dir

    try:
        vllm_python()
    except VllmError as exc:
        pytest.skip(str(exc))
    model_dir = default_dir()
    if not (model_dir / "config.json").exists():
        pytest.skip(f"no converted model at {model_dir} (run `make vllm`)")
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm-protocol-{os.getpid()}.log"
    with start_vllm(
        model_dir, port=free_port(), served_name="eval", log=log, max_model_len=2048
    ) as server:
        yield server, model_dir


def _both(served: tuple[Any, Path], tokenizer: Any, prompts: list[str], budget: int):
    from cgd.train.evaluate import generate_hf, generate_vllm_server
    from cgd.train.model import load_model

    server, model_dir = served
    remote = generate_vllm_server(server.url, server.model, tokenizer, prompts, budget)
    model = load_model(
        str(model_dir), dtype=torch.float32, attn_implementation="sdpa",
        device=torch.device("cpu"),
    )  # fmt: skip
    local = generate_hf(
        model, tokenizer, prompts, max_new_tokens=budget, batch_size=4,
        autocast=torch.autocast("cpu", enabled=False),
    )  # fmt: skip
    return remote, local


def test_vllm_and_transformers_report_the_same_cut_offs(served):
    from cgd.train.evaluate import eval_prompt
    from cgd.train.model import load_tokenizer

    tok = load_tokenizer(str(served[1]))
    prompts = [eval_prompt(tok, p) for p in PROBLEMS]
    remote, local = _both(served, tok, prompts, 24)
    flags_remote = [o.truncated for o in remote]
    flags_local = [o.truncated for o in local]
    print("vLLM", flags_remote, "transformers", flags_local)
    assert flags_remote[-1] is True  # a long explanation does not fit 24 tokens
    assert flags_remote == flags_local


def test_a_base_model_stops_at_the_stop_strings_on_vllm(served):
    from cgd.train.evaluate import BASE_STOP_STRINGS, eval_prompt, stop_strings
    from cgd.train.model import load_tokenizer

    tok = copy.deepcopy(load_tokenizer(str(served[1])))
    tok.chat_template = None  # as a base model: plain "Question: …\n\nAnswer:" prompts
    assert stop_strings(tok) == list(BASE_STOP_STRINGS)
    prompts = [eval_prompt(tok, p) for p in PROBLEMS]
    remote, local = _both(served, tok, prompts, 96)
    for out in [*remote, *local]:
        assert not any(s in str(out) for s in BASE_STOP_STRINGS), str(out)
    # The server takes the `stop` list (this instruct model ends at eos before reaching one;
    # tests/test_train_protocol.py shows a stop string ending transformers generation).
    # Greedy on the same weights: where one stopped early (not cut off), so did the other.
    assert [o.truncated for o in remote] == [o.truncated for o in local]
