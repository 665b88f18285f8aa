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


# -- eval sets: field mapping, verifier kinds, avg@k (issue #12) ---------------------------------


class _PlainTokenizer:
    """Enough of a tokenizer for eval_prompt: no chat template (plain "Question:" prompts)."""

    chat_template = None


def _bundled_records(name: str, n: int) -> list[dict]:
    from importlib import resources

    text = resources.files("cgd").joinpath("data", name).read_text("utf-8")
    return [json.loads(x) for x in text.splitlines()[:n]]


def test_parse_eval_set_options():
    from cgd.curation.eval_sets import EvalSet, parse_eval_set, set_name

    assert parse_eval_set("aime24") == EvalSet(source="aime24", name="aime24")
    spec = parse_eval_set("/data/mc.jsonl:question=prompt:answer=label:kind=choice:k=4")
    assert (spec.source, spec.name, spec.question_field, spec.answer_field) == (
        "/data/mc.jsonl",
        "mc",
        "prompt",
        "label",
    )
    assert spec.kind == "choice" and spec.k == 4 and spec.sampling is not None
    assert set_name("amc23:k=8:temperature=1.0:name=amc") == "amc"
    for bad in ("math500:kind=regex", "math500:k=0", "math500:colour=red", "math500:k=x"):
        with pytest.raises(ValueError):
            parse_eval_set(bad)


def test_solution_only_file_is_graded_on_its_boxed_answer(tmp_path):
    """A MATH-style file with problem/solution only: the reference is the boxed answer."""
    from cgd.verify import check

    records = _bundled_records("math500.jsonl", 20)
    path = tmp_path / "math_solutions.jsonl"
    path.write_text(
        "".join(
            json.dumps({"problem": r["problem"], "solution": r["solution"]}) + "\n" for r in records
        )
    )
    rows = load_eval_rows(str(path))
    assert len(rows) == 20 and rows[0]["problem"] == records[0]["problem"]
    for row, record in zip(rows, records, strict=True):
        assert check("math", rf"\boxed{{{record['answer']}}}", row["answer"]).correct is True


def test_field_mapping_and_errors(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"id": "q1", "prompt": "2+2?", "target": 4, "answer": None}) + "\n")
    assert load_eval_rows(str(path)) == [{"id": "q1", "problem": "2+2?", "answer": "4"}]
    assert load_eval_rows(f"{path}:question=prompt:answer=target")[0]["answer"] == "4"
    with pytest.raises(ValueError, match=r"row 1: no reference field \(label\)"):
        load_eval_rows(f"{path}:answer=label")
    path.write_text(json.dumps({"text": "2+2?", "answer": 4}) + "\n")
    with pytest.raises(ValueError, match="row 1: no question field"):
        load_eval_rows(str(path))
    path.write_text(json.dumps({"problem": "p", "solution": "no box here"}) + "\n")
    with pytest.raises(ValueError, match="no .*boxed"):
        load_eval_rows(str(path))
    path.write_text('{"problem": "p", "answer": 1}\n{"problem"\n')
    with pytest.raises(ValueError, match="line 2: bad JSON"):
        load_eval_rows(str(path))


def test_gsm8k_test_split_is_not_bundled():
    with pytest.raises(FileNotFoundError, match="not bundled"):
        load_eval_rows("gsm8k")


def test_choice_set_uses_the_choice_verifier(tmp_path):
    from cgd.train.evaluate import evaluate_sets_detailed

    path = tmp_path / "mc.jsonl"
    rows = [
        {"question": "Pick C", "choices": ["1", "2", "3", "4"], "label": "C"},
        {"question": "Pick A", "choices": ["1", "2", "3", "4"], "label": "A"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: list[str] = []

    def generate(prompts, sampling):
        seen.extend(prompts)
        return ["The answer is (C)."] * len(prompts)

    results = evaluate_sets_detailed(
        [f"{path}:answer=label:kind=choice"], _PlainTokenizer(), generate, out_dir=tmp_path
    )
    assert results["mc"].kind == "choice" and results["mc"].n == 2
    assert results["mc"].accuracy == 0.5
    assert "(C) 3" in seen[0]  # the options are part of the prompt


def test_avg_at_k_and_greedy(tmp_path):
    from cgd.train.evaluate import accuracy_summary, evaluate_sets_detailed

    answers = {r["problem"]: str(int(r["answer"])) for r in _bundled_records("amc23.jsonl", 40)}
    calls = []

    def gold(prompt):
        return next(a for q, a in answers.items() if q in prompt)

    def generate(prompts, sampling):
        calls.append(sampling)
        if sampling is None:  # greedy: right on the first problem only
            return [rf"\boxed{{{gold(prompts[0])}}}"] + [r"\boxed{-1}"] * (len(prompts) - 1)
        out = []
        for p in prompts:  # sampled: every problem right in 1 sample of 4
            out += [rf"\boxed{{{gold(p)}}}", r"\boxed{-1}", "no answer", r"\boxed{-2}"]
        return out

    results = evaluate_sets_detailed(
        ["amc23:k=4"], _PlainTokenizer(), generate, out_dir=tmp_path, limit=5
    )
    result = results["amc23"]
    assert calls[0] is None and calls[1].k == 4
    assert (result.n, result.k) == (5, 4)
    assert result.accuracy == pytest.approx(0.2)
    assert result.avg_at_k == pytest.approx(0.25) and result.pass_at_k == 1.0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["amc23"]["n"] == 5 and saved["amc23"]["k"] == 4
    assert saved["amc23"]["avg_at_k"] == pytest.approx(0.25)
    samples = (tmp_path / "amc23.avg@4.jsonl").read_text().splitlines()
    assert len(samples) == 20 and json.loads(samples[1])["sample"] == 1
    assert accuracy_summary(results) == {"amc23": 0.2, "amc23/avg@4": 0.25}


def test_sampled_generation_returns_k_per_prompt(tiny):
    from cgd.train.evaluate import Sampling, eval_prompt, generate_hf

    _, model, tok = tiny
    prompts = [eval_prompt(tok, p) for p in ["What is 2 + 2?", "What is 3 + 5?"]]
    off = torch.autocast("cpu", enabled=False)
    out = generate_hf(
        model, tok, prompts, max_new_tokens=4, batch_size=3, autocast=off, sampling=Sampling(k=3)
    )
    assert len(out) == 6 and all(isinstance(o, str) for o in out)
