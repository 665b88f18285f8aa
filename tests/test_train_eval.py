"""Evaluation scoring and generation, and the refinement-uncertainty metric."""

from __future__ import annotations

import json
import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from cgd.templates import EVAL_SYSTEM  # noqa: E402
from cgd.train.evaluate import (  # noqa: E402
    evaluate_model,
    evaluate_path,
    load_eval_rows,
    score_outputs,
)
from cgd.train.model import load_model, load_tokenizer  # noqa: E402
from cgd.train.runtime import init_runtime  # noqa: E402
from cgd.train.tiny import make_tiny_model, synthetic_rows  # noqa: E402
from cgd.train.uncertainty import refinement_uncertainty  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = str(make_tiny_model(tmp_path_factory.mktemp("ev") / "tiny"))
    model = load_model(
        path, dtype=torch.float32, attn_implementation="sdpa", device=torch.device("cpu")
    )
    return path, model, load_tokenizer(path)


@pytest.mark.parametrize("name", ["math500", "amc23"])
def test_reference_answers_fed_back_score_100(name):
    rows = load_eval_rows(name)
    assert len(rows) == {"math500": 500, "amc23": 40}[name]
    outputs = [
        f"Reasoning step by step.\nThe final answer is $\\boxed{{{r['answer']}}}$." for r in rows
    ]
    accuracy, records = score_outputs(rows, outputs)
    wrong = [r for r in records if not r["correct"]]
    assert accuracy == 1.0, wrong[:5]
    assert records[0]["extracted"] == rows[0]["answer"]
    # And a wrong answer is wrong.
    accuracy, _ = score_outputs(rows[:5], ["\\boxed{-98765}"] * 5)
    assert accuracy == 0.0


def test_eval_rows_from_jsonl_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": 2}) + "\n")
    assert load_eval_rows(str(path)) == [{"id": "0", "problem": "1+1?", "answer": "2"}]


def test_generation_writes_per_sample_log(tiny, tmp_path):
    _, model, tok = tiny
    acc = evaluate_model(
        model,
        tok,
        ["amc23"],
        out_dir=tmp_path,
        max_new_tokens=4,
        batch_size=2,
        autocast=torch.autocast("cpu", enabled=False),
        limit=3,
    )
    assert set(acc) == {"amc23"} and 0.0 <= acc["amc23"] <= 1.0
    records = [json.loads(x) for x in (tmp_path / "amc23.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert {"id", "prompt", "output", "extracted", "correct", "answer"} <= set(records[0])
    assert EVAL_SYSTEM in records[0]["prompt"] and records[0]["prompt"].endswith("assistant\n")


def test_batched_left_padded_generation_matches_one_by_one(tiny, tmp_path):
    _, model, tok = tiny
    from cgd.train.evaluate import eval_prompt, generate_hf

    prompts = [
        eval_prompt(tok, p) for p in ["What is 2 + 2?", "Compute 48 / 2 + 7 * 3, then simplify."]
    ]
    off = torch.autocast("cpu", enabled=False)
    batched = generate_hf(model, tok, prompts, max_new_tokens=6, batch_size=2, autocast=off)
    single = [
        generate_hf(model, tok, [p], max_new_tokens=6, batch_size=1, autocast=off)[0]
        for p in prompts
    ]
    assert batched == single


def test_evaluate_saved_model_with_transformers(tiny, tmp_path):
    path, _, _ = tiny
    acc = evaluate_path(path, ["aime24"], out_dir=tmp_path, max_new_tokens=3, limit=2, backend="hf")
    assert set(acc) == {"aime24"} and (tmp_path / "aime24.jsonl").exists()


def test_uncertainty_runs_and_depends_on_the_critique(tiny):
    _, model, tok = tiny
    rows = synthetic_rows(4)
    runtime = init_runtime("fp32")
    out = refinement_uncertainty(model, tok, rows, max_length=1024, runtime=runtime)
    assert out["uncertainty_samples"] == 4
    for key in ("entropy_with_critique", "entropy_without_critique", "nll_with_critique"):
        assert math.isfinite(out[key]) and out[key] > 0
    assert out["entropy_with_critique"] != out["entropy_without_critique"]
    assert out["entropy_gap"] == pytest.approx(
        out["entropy_without_critique"] - out["entropy_with_critique"]
    )
    # Entropy is bounded by log |V|.
    assert out["entropy_with_critique"] <= math.log(len(tok)) + 1e-4
