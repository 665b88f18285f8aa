"""Evaluation and data protocol of a faithful experiment (issue 23, departures 3 and 4):
cut-off generations score as no answer, unbiased pass@k, stop strings for base models,
checkpoint selection on a validation set."""

from __future__ import annotations

import json
import math
import os
from itertools import combinations
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from cgd.curation.eval_sets import parse_eval_set  # noqa: E402
from cgd.train.evaluate import (  # noqa: E402
    BASE_STOP_STRINGS,
    Completion,
    eval_prompt,
    evaluate_sets_detailed,
    generate_hf,
    score_outputs,
    stop_strings,
)
from cgd.train.model import load_model, load_tokenizer  # noqa: E402
from cgd.train.passk import avg_at_k, mean_pass_at_k, pass_at_k  # noqa: E402
from cgd.train.tiny import make_tiny_model  # noqa: E402

torch.set_num_threads(1)
OFF = torch.autocast("cpu", enabled=False)


def _load(path):
    model = load_model(
        str(path), dtype=torch.float32, attn_implementation="sdpa", device=torch.device("cpu")
    )
    return model, load_tokenizer(str(path))


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    return _load(make_tiny_model(tmp_path_factory.mktemp("chat") / "tiny"))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return _load(make_tiny_model(tmp_path_factory.mktemp("base") / "tiny", chat_template=False))


# -- unbiased pass@k ---------------------------------------------------------------------------


def test_pass_at_k_matches_the_closed_form_and_the_subset_count():
    for n, c, k in [(10, 3, 1), (10, 3, 4), (16, 1, 8), (5, 0, 2), (5, 5, 5), (8, 6, 3)]:
        closed = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(closed)
        # Same thing counted: the share of k-subsets of the n samples holding a correct one.
        verdicts = [True] * c + [False] * (n - c)
        hits = [any(s) for s in combinations(verdicts, k)]
        assert pass_at_k(n, c, k) == pytest.approx(sum(hits) / len(hits))
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the sample accuracy
    # Averaged over problems; n > k is not "any of the n" (the old, biased pass@k gave 1.0).
    problems = [[True] + [False] * 7, [False] * 8]
    assert mean_pass_at_k(problems, 2) == pytest.approx((1 - math.comb(7, 2) / math.comb(8, 2)) / 2)
    assert avg_at_k(problems) == pytest.approx(1 / 16)
    with pytest.raises(ValueError, match="k=5"):
        pass_at_k(4, 1, 5)


def test_eval_set_takes_n_samples_at_least_k():
    spec = parse_eval_set("amc23:k=4:n=16")
    assert (spec.k, spec.samples, spec.sampling.k) == (4, 16, 16)
    assert parse_eval_set("amc23:k=4").samples == 4
    with pytest.raises(ValueError, match="n \\(samples per problem\\) must be >= k"):
        parse_eval_set("amc23:k=4:n=2")


def test_pass_at_k_of_a_set_uses_n_samples(tmp_path):
    rows = [{"id": f"p{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(2)]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def generate(prompts, sampling):
        if sampling is None:
            return [r"\boxed{1}", r"\boxed{0}"]
        assert sampling.k == 8
        # problem 0: 2 of 8 right; problem 1: none
        return [r"\boxed{1}"] * 2 + ["no"] * 6 + ["no"] * 8

    (res,) = evaluate_sets_detailed(
        [f"{path}:k=4:n=8:name=s"], _PlainTokenizer(), generate, out_dir=tmp_path
    ).values()
    assert res.samples == 8 and res.k == 4
    assert res.avg_at_k == pytest.approx(2 / 16)
    assert res.pass_at_k == pytest.approx((1 - math.comb(6, 4) / math.comb(8, 4)) / 2)
    assert res.problems["ids"] == ["p0", "p1"] and res.problems["correct"] == [True, False]
    assert res.problems["samples"][0] == [True, True] + [False] * 6


# -- cut-off generations are "no answer" -------------------------------------------------------


def test_truncated_completion_is_no_answer_even_with_the_right_number():
    rows = [{"id": "a", "problem": "1+1?", "answer": "2"}] * 2
    outputs = [Completion(r"so \boxed{2} and then", truncated=True), Completion(r"\boxed{2}")]
    accuracy, records = score_outputs(rows, outputs)
    # Before: the cut-off text was graded on its stray \boxed{2} and counted correct.
    assert records[0] | {"output": None} == {
        "id": "a", "problem": "1+1?", "answer": "2", "output": None,
        "truncated": True, "extracted": None, "correct": False,
    }  # fmt: skip
    assert records[1]["correct"] and not records[1]["truncated"]
    assert accuracy == 0.5


def test_no_answer_is_counted_per_set(tmp_path):
    rows = [{"id": str(i), "problem": f"q{i}", "answer": "2"} for i in range(3)]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def generate(prompts, sampling):
        return [Completion(r"\boxed{2}", truncated=True), r"\boxed{2}", "none"]

    (res,) = evaluate_sets_detailed(
        [str(path)], _PlainTokenizer(), generate, out_dir=tmp_path
    ).values()
    assert res.no_answer == 1 and res.accuracy == pytest.approx(1 / 3)
    assert res.problems["no_answer"] == [True, False, False]
    logged = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["truncated"] for r in logged] == [True, False, False]


def test_hf_generation_reports_the_budget_cut(chat):
    model, tok = chat
    prompts = [eval_prompt(tok, "What is 2 + 2?")]
    short = generate_hf(model, tok, prompts, max_new_tokens=2, batch_size=1, autocast=OFF)
    long = generate_hf(model, tok, prompts, max_new_tokens=200, batch_size=1, autocast=OFF)
    # A tiny random model rarely ends within 2 tokens: that one is cut off.
    assert short[0].truncated is True
    n_long = len(tok(str(long[0]), add_special_tokens=False).input_ids)
    assert long[0].truncated == (n_long >= 199)


# -- stop strings for base models --------------------------------------------------------------


def test_stop_strings_only_for_models_without_a_chat_template(chat, base):
    assert stop_strings(chat[1]) == []
    assert stop_strings(base[1]) == list(BASE_STOP_STRINGS)
    assert "\n\nQuestion:" in BASE_STOP_STRINGS  # the plain prompt's next question


def test_hf_generation_stops_at_a_stop_string(base):
    model, tok = base
    prompts = [eval_prompt(tok, "What is 2 + 2?")]
    free = generate_hf(model, tok, prompts, max_new_tokens=24, batch_size=1, autocast=OFF, stop=[])
    text = str(free[0])
    assert len(text) > 6
    stop = text[3:6]  # a string the model is known to produce here
    cut = generate_hf(
        model, tok, prompts, max_new_tokens=24, batch_size=1, autocast=OFF, stop=[stop]
    )
    # Stopped there (well before the budget), the stop string left out as vLLM does.
    assert text.startswith(str(cut[0])) and len(str(cut[0])) <= text.find(stop) + len(stop)
    assert stop not in str(cut[0])
    assert cut[0].truncated is False  # a stop is an ending, not a budget cut


class _PlainTokenizer:
    chat_template = None

    def __call__(self, text, add_special_tokens=True):
        class _Ids:
            input_ids = list(range(len(text.split())))

        return _Ids()


# -- checkpoint selection, reporting contract, common rows (a tiny training loop) ------------


def test_choose_best_takes_the_highest_score_and_the_earlier_step_on_ties():
    from cgd.train.loop import choose_best

    assert choose_best([]) is None
    assert choose_best([(2, 0.1), (4, 0.5), (6, 0.3)]) == 4
    assert choose_best([(2, 0.5), (4, 0.5), (6, 0.2)]) == 2
    assert choose_best([(6, 0.2)]) == 6


@pytest.fixture(scope="module")
def loop_assets(tmp_path_factory):
    from cgd.train.tiny import write_synthetic_export

    root = tmp_path_factory.mktemp("loop")
    model = make_tiny_model(root / "tiny")
    export = write_synthetic_export(root / "train.jsonl", 16)
    # A validation set the tiny model's greedy answers are graded on.
    val = root / "val.jsonl"
    val.write_text(
        "".join(
            json.dumps({"id": f"v{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)})
            + "\n"
            for i in range(3)
        )
    )
    return model, export, val


def _loop(loop_assets, out, **kw):
    from cgd.train.config import TrainConfig
    from cgd.train.loop import TrainRecipe

    model, export, val = loop_assets
    base = dict(
        model_path=str(model),
        train_file=str(export),
        output_dir=str(out),
        max_length=256,
        batch_unit="tokens",
        tokens_per_step=512,
        learning_rate=3e-3,
        warmup_ratio=0.0,
        max_steps=4,
        uncertainty_samples=0,
        export_dtype="float32",
        eval_max_new_tokens=4,
        eval_batch_size=4,
    )
    events: list[tuple[str, dict]] = []
    recipe = TrainRecipe(TrainConfig(**(base | kw)), on_event=lambda k, d: events.append((k, d)))
    recipe.setup()
    try:
        result = recipe.train()
    finally:
        recipe.cleanup()
    return recipe, result, events


def test_select_on_reports_the_final_sets_on_the_best_step(loop_assets, tmp_path):
    _, _, val = loop_assets
    recipe, result, events = _loop(
        loop_assets,
        tmp_path / "run",
        select_on=f"{val}:name=val",
        select_every_steps=2,
        eval_sets=[f"{val}:name=test"],
    )
    validations = [d for k, d in events if k == "eval" and "select_on" in d]
    assert [d["step"] for d in validations] == [2, 4]
    scores = [(d["step"], d["validation_accuracy"]) for d in validations]
    best = max(scores, key=lambda p: (p[1], -p[0]))[0]
    final = [d for k, d in events if k == "eval" and "accuracy" in d][-1]
    assert final["selected"] == {"on": "val", "step": best} == result["selected"]
    # The selected weights are the ones evaluated and exported: the best step's.
    saved = torch.load(tmp_path / "run" / "best" / "weights.pt", weights_only=True)
    assert saved["step"] == best
    live = recipe.model.state_dict()
    name = next(iter(saved["state"]))
    if best != 4:
        assert torch.equal(saved["state"][name], live[name].cpu())


def test_reporting_contract_of_step_data_and_eval_events(loop_assets, tmp_path):
    _, _, val = loop_assets
    _, _, events = _loop(
        loop_assets, tmp_path / "run", eval_sets=[f"{val}:name=test:k=2:n=3:temperature=1.0"]
    )
    steps = [d for k, d in events if k == "step"]
    tokens = [d["tokens_trained"] for d in steps]
    assert tokens == sorted(tokens) and tokens[-1] == sum(d["tokens"] for d in steps)
    (data,) = [d for k, d in events if k == "data"]
    assert data["rows"] == data["samples"] > 0 and len(data["rows_sha256"]) == 64
    assert set(data["dropped"]) == {"missing_field", "target_too_long", "not_common"}
    assert data["total_steps"] == 4 and isinstance(data["truncated"], dict)
    final = [d for k, d in events if k == "eval" and "accuracy" in d][-1]
    problems = final["problems"]["test"]
    assert problems["ids"] == ["v0", "v1", "v2"] and problems["k"] == 2
    assert len(problems["correct"]) == 3 and len(problems["no_answer"]) == 3
    assert [len(s) for s in problems["samples"]] == [3, 3, 3]
    assert final["no_answer"]["test"] == sum(problems["no_answer"])
    assert final["pass_at_k"]["test"] == pytest.approx(mean_pass_at_k(problems["samples"], 2))
    assert final["avg_at_k"]["test"] == pytest.approx(avg_at_k(problems["samples"]))
    assert final["selected"] is None and final["step"] == 4
    # The per-sample files hold the same verdicts, and their paths were posted.
    (eval_dir,) = [d for k, d in events if k == "artifact" and d["kind"] == "eval_dir"]
    greedy_file, sampled_file = eval_dir["files"]["test"]
    greedy = [json.loads(x) for x in Path(greedy_file).read_text().splitlines()]
    assert [r["correct"] for r in greedy] == problems["correct"]
    assert [r["truncated"] for r in greedy] == problems["no_answer"]
    sampled = [json.loads(x) for x in Path(sampled_file).read_text().splitlines()]
    assert [r["correct"] for r in sampled] == [c for s in problems["samples"] for c in s]


def test_common_modes_train_every_mode_on_the_same_rows(loop_assets, tmp_path):
    from cgd.train.data import tokenize_to_store

    model, export, _ = loop_assets
    tok = load_tokenizer(str(model))
    rows = [json.loads(x) for x in Path(export).read_text().splitlines()]
    rows[0]["critique"] = ""  # unusable by cgd (no critique), fine for sft
    rows[1]["initial_response"] = "very long answer. " * 400  # cgd must cut it, sft need not
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    digests, counts = {}, {}
    for mode in ("cgd", "sft"):
        store, stats = tokenize_to_store(
            path, tok, tmp_path / mode, max_length=256, mode=mode, common_modes=["cgd", "sft"]
        )
        digests[mode], counts[mode] = stats.rows_sha256(), len(store)
        # Per listed mode, the kept rows whose input that mode had to cut.
        assert stats.truncated["cgd"] >= 1 and stats.truncated["sft"] == 0
        assert stats.dropped()["not_common"] + stats.dropped_missing_field == 1
    assert digests["cgd"] == digests["sft"] and counts["cgd"] == counts["sft"] == len(rows) - 1
    # Without common_modes sft would train on the critique-less row too.
    _, alone = tokenize_to_store(path, tok, tmp_path / "alone", max_length=256, mode="sft")
    assert alone.samples == len(rows) and alone.rows_sha256() != digests["sft"]


def test_run_spec_fields_reach_the_train_config(tmp_path):
    from cgd.runs.schemas import TrainingRunSpec
    from cgd.train.config import TrainConfig
    from services.worker.trainer import train_config

    spec = TrainingRunSpec.model_validate(
        {
            "snapshot_id": "5d0c4c8e-5b3a-4e0e-9a59-0d7f3c1e2b11",
            "base_model": "m",
            "mode": "sft",
            "common_modes": ["cgd", "sft", "sft"],
            "hyperparams": {"seed": 7},
            "eval": {"sets": ["amc23"], "select_on": "math500", "select_every_steps": 5},
        }
    ).model_dump(mode="json")
    trainer_view = {"spec": spec, "base_model_location": str(tmp_path / "models" / "m")}
    config = train_config(trainer_view, tmp_path / "d", tmp_path / "o", ["amc23"], "math500")
    # The trainer loads what the API resolved the name to, never the name itself.
    assert config.model_path == str(tmp_path / "models" / "m")
    assert config.seed == 7 and [m.value for m in config.common_modes] == ["cgd", "sft"]
    assert (config.select_on, config.select_every_steps) == ("math500", 5)
    with pytest.raises(ValueError, match="must include the run's mode 'cgd'"):
        TrainingRunSpec.model_validate({**spec, "mode": "cgd", "common_modes": ["sft"]})
    with pytest.raises(ValueError, match="common_modes needs native rows"):
        TrainConfig(
            model_path="m", train_file="f", layout="messages", common_modes=["cgd"], output_dir="o"
        )
