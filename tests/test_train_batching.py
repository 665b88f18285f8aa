"""batch_unit=samples: every training format makes the same optimizer steps on the same
triplets; the refinement-uncertainty metric is measured on the validation split, NLL gap first."""

from __future__ import annotations

import json
import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from cgd.train.config import TrainConfig  # noqa: E402
from cgd.train.loop import TrainRecipe  # noqa: E402
from cgd.train.tiny import make_tiny_model, write_synthetic_export  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    return make_tiny_model(root / "tiny"), write_synthetic_export(root / "train.jsonl", 40)


def _config(assets, out, **kw) -> TrainConfig:
    model, export = assets
    base = dict(
        model_path=str(model),
        train_file=str(export),
        output_dir=str(out),
        max_length=512,
        samples_per_step=8,
        learning_rate=1e-3,
        uncertainty_samples=0,
        export_dtype="float32",
    )
    return TrainConfig(**(base | kw))


def _run(config):
    events = []
    recipe = TrainRecipe(config, on_event=lambda k, d: events.append((k, d)))
    recipe.setup()
    try:
        result = recipe.train()
    finally:
        recipe.cleanup()
    return recipe, result, events


@pytest.mark.slow
def test_samples_unit_gives_every_mode_the_same_steps(assets, tmp_path):
    """cgd, sft and no-critique rows differ in length (so in packed rows), not in steps."""
    steps, samples, rows = {}, {}, {}
    for mode in ("cgd", "sft", "no-critique"):
        recipe, result, events = _run(_config(assets, tmp_path / mode, mode=mode))
        assert result["state"] == "finished"
        data = next(d for k, d in events if k == "data")
        assert data["batch_unit"] == "samples" and data["samples_per_step"] == 8
        steps[mode] = [m["step"] for m in recipe.history]
        samples[mode] = [m["samples"] for m in recipe.history]
        rows[mode] = sum(len(recipe.loader.step_rows(s)) for s in range(recipe.total_steps))
    assert steps["cgd"] == steps["sft"] == steps["no-critique"] == list(range(1, 6))
    assert samples["cgd"] == samples["sft"] == samples["no-critique"] == [8] * 5
    assert math.ceil(40 / 8) == 5
    assert rows["sft"] < rows["cgd"]  # shorter sft samples pack into fewer rows
    # Under tokens, the modes would not agree: rows of 512 tokens hold different sample counts.
    tok_cfgs = [_config(assets, tmp_path / f"t{m}", mode=m, batch_unit="tokens",
                        tokens_per_step=1024) for m in ("cgd", "sft")]  # fmt: skip
    totals = []
    for cfg in tok_cfgs:
        recipe = TrainRecipe(cfg)
        recipe.setup()
        totals.append(recipe.total_steps)
        recipe.cleanup()
    assert totals[0] != totals[1]


def test_samples_unit_micro_batches_and_ranks_cover_each_step_once(assets, tmp_path):
    """Several rows per micro-batch and a 2-rank split: every sample of a step exactly once."""
    recipe = TrainRecipe(_config(assets, tmp_path / "mb", micro_batch_rows=2, max_length=256))
    recipe.setup()
    recipe.cleanup()
    loader = recipe.loader
    for step in range(loader.total_steps(1)):
        rows = loader.step_rows(step)
        assert len(rows) % 2 == 0
        assert sorted(i for r in rows for i in r) == sorted(
            i for r in loader.epoch_plan(0)[step * 8 : step * 8 + 8] for i in r
        )
        counts = loader.step_counts(step)
        batches = loader.micro_batches(step)
        assert counts["supervised_tokens"] == sum(b.n_supervised for b in batches)
        assert counts["tokens"] == sum(b.n_tokens for b in batches)


@pytest.mark.slow
def test_uncertainty_on_the_validation_split_nll_gap_first(assets, tmp_path):
    model, export = assets
    # Without a validation file: every row trains and the metric is skipped, saying why.
    recipe, result, events = _run(_config(assets, tmp_path / "none", uncertainty_samples=6))
    data = next(d for k, d in events if k == "data")
    assert data["heldout_samples"] == 0 and data["samples"] == 40
    assert "no validation split" in data["uncertainty_skipped"]
    assert "uncertainty" not in (result["eval"] or {})

    # With a validation split: all training rows are trained on, the split is measured.
    validation = write_synthetic_export(tmp_path / "validation.jsonl", 5, seed=7)
    recipe, result, events = _run(
        _config(assets, tmp_path / "val", uncertainty_samples=6, validation_file=str(validation))
    )
    data = next(d for k, d in events if k == "data")
    assert data["samples"] == 40 and data["heldout_samples"] == 5
    rows = [json.loads(x) for x in validation.read_text().splitlines()]
    assert [r["prompt"] for r in recipe.heldout_rows] == [r["prompt"] for r in rows]
    uncertainty = result["eval"]["uncertainty"]
    assert uncertainty["uncertainty_samples"] == 5 and list(uncertainty)[0] == "nll_gap"
    assert uncertainty["nll_gap"] == pytest.approx(
        uncertainty["nll_without_critique"] - uncertainty["nll_with_critique"]
    )
