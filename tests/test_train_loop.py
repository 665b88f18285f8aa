"""The training loop on a tiny model: loss goes down, exact resume, LoRA merge round trip."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from cgd.train.config import TrainConfig  # noqa: E402
from cgd.train.data import collate, tokenize_export  # noqa: E402
from cgd.train.loop import TrainRecipe, lr_multiplier, run_training  # noqa: E402
from cgd.train.model import load_lora, load_model, load_tokenizer  # noqa: E402
from cgd.train.plan import plan_line  # noqa: E402
from cgd.train.tiny import make_tiny_model, write_synthetic_export  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    model = make_tiny_model(root / "tiny")
    export = write_synthetic_export(root / "train.jsonl", 48)
    return model, export


def _config(assets, out, **kw) -> TrainConfig:
    model, export = assets
    base = dict(
        model_path=str(model),
        train_file=str(export),
        output_dir=str(out),
        max_length=256,
        batch_unit="tokens",
        tokens_per_step=512,  # 2 rows per step
        micro_batch_rows=1,
        learning_rate=3e-3,
        warmup_ratio=0.1,
        max_steps=6,
        uncertainty_samples=0,
        export_dtype="float32",
        pack_window=16,
    )
    return TrainConfig(**(base | kw))


def _run(config, should_stop=None):
    events = []
    recipe = TrainRecipe(
        config, on_event=lambda k, d: events.append((k, d)), should_stop=should_stop
    )
    recipe.setup()
    try:
        result = recipe.train()
    finally:
        recipe.cleanup()
    return recipe, result, events


def test_lr_schedule_shape():
    kw = dict(total_steps=100, warmup_steps=10, min_ratio=0.0)
    assert lr_multiplier(0, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_multiplier(9, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_multiplier(55, schedule="cosine", **kw) == pytest.approx(0.5)
    assert lr_multiplier(55, schedule="linear", **kw) == pytest.approx(0.5)
    assert lr_multiplier(99, schedule="constant", **kw) == 1.0
    assert lr_multiplier(100, schedule="cosine", **kw) == pytest.approx(0.0)


@pytest.mark.slow
def test_loss_decreases_and_events(assets, tmp_path):
    # The uncertainty metric measures the validation split (no training row is held out).
    val = write_synthetic_export(tmp_path / "val.jsonl", 8)
    config = _config(
        assets,
        tmp_path / "run",
        max_steps=40,
        schedule="constant",
        uncertainty_samples=4,
        validation_file=str(val),
    )
    recipe, result, events = _run(config)
    losses = [m["loss"] for m in recipe.history]
    assert len(losses) == 40 and result["state"] == "finished"
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    kinds = [k for k, _ in events]
    assert kinds[0] == "status" and "data" in kinds and kinds.count("step") == 40
    step = next(d for k, d in events if k == "step")
    assert {
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "supervised_tokens_per_s",
        "memory_gib",
    } <= set(step)
    assert step["supervised_tokens"] < step["tokens"] <= 512
    artifacts = [d["kind"] for k, d in events if k == "artifact"]
    assert "checkpoint" in artifacts and "model" in artifacts
    uncertainty = next(d for k, d in events if k == "eval")["uncertainty"]
    assert uncertainty["uncertainty_samples"] == 4
    # Metrics file and a final model that loads with plain transformers.
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 40
    AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")


@pytest.mark.parametrize("method", ["full", "lora"])
def test_exact_resume(assets, tmp_path, method):
    kw = dict(method=method, lora_dropout=0.2, lora_r=4, max_steps=6)
    _, whole, _ = _run(_config(assets, tmp_path / "a", **kw))
    full_run = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]

    calls = []

    def stop_after_three() -> bool:
        calls.append(1)
        return len(calls) > 3

    recipe, cut, events = _run(_config(assets, tmp_path / "b", **kw), should_stop=stop_after_three)
    assert cut == {"state": "cancelled", "step": 3}
    assert events[-1][1]["state"] == "cancelled"
    ckpt = tmp_path / "b" / "checkpoints" / "step_000003"
    assert (ckpt / "training_state.pt").exists() and (ckpt / "rng_rank0.pt").exists()
    assert json.loads((ckpt / "config.json").read_text())["method"] == method

    resumed, _, _ = _run(_config(assets, tmp_path / "b", resume_from=str(ckpt), **kw))
    assert [m["step"] for m in resumed.history] == [4, 5, 6]
    for a, b in zip(full_run[3:], resumed.history, strict=True):
        assert a["loss"] == b["loss"] and a["lr"] == b["lr"] and a["grad_norm"] == b["grad_norm"]
    wa = load_file(tmp_path / "a" / "final" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "final" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_lora_merged_export_round_trip(assets, tmp_path):
    config = _config(
        assets, tmp_path / "lora", method="lora", lora_r=4, max_steps=4, lora_dropout=0.0
    )
    result = run_training(config)
    model_path, export = assets
    tok = load_tokenizer(str(model_path))
    samples, _ = tokenize_export(export, tok, max_length=256, limit=3)
    batch = collate([samples], tok.pad_token_id)

    cpu = torch.device("cpu")
    base = load_model(str(model_path), dtype=torch.float32, attn_implementation="sdpa", device=cpu)
    peft_model = load_lora(base, str(tmp_path / "lora" / "checkpoints" / "step_000004" / "model"))
    merged = AutoModelForCausalLM.from_pretrained(result["final_model"])
    plain = load_model(str(model_path), dtype=torch.float32, attn_implementation="sdpa", device=cpu)
    with torch.no_grad():
        kw = dict(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False)
        a, b, c = peft_model.eval()(**kw).logits, merged(**kw).logits, plain(**kw).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert (a - c).abs().max() > 1e-3  # the adapter did change the model


def test_gradient_checkpointing_and_micro_batches_do_not_change_the_loss(assets, tmp_path):
    """Same global step, different memory plans: 2 rows at once, or recomputed activations."""
    runs = [
        _run(_config(assets, tmp_path / "a", max_steps=3))[0],
        _run(_config(assets, tmp_path / "b", max_steps=3, micro_batch_rows=2))[0],
        _run(_config(assets, tmp_path / "c", max_steps=3, gradient_checkpointing=True))[0],
    ]
    a, b, c = ([m["loss"] for m in r.history] for r in runs)
    assert a == pytest.approx(b, rel=1e-5) and a == pytest.approx(c, rel=1e-5)


def test_tensorboard_event_files_hold_each_logged_step(assets, tmp_path):
    """The event files TensorBoard reads carry the same loss and lr as metrics.jsonl."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    config = _config(assets, tmp_path / "tb", max_steps=3, log_interval_steps=1)
    run_training(config)
    logged = [json.loads(x) for x in (tmp_path / "tb" / "metrics.jsonl").read_text().splitlines()]
    acc = accumulator.EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/lr", "train/tokens_per_s"} <= set(acc.Tags()["scalars"])
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert [s for s, _ in loss] == [m["step"] for m in logged]
    assert [v for _, v in loss] == pytest.approx([m["loss"] for m in logged], rel=1e-6)


def test_every_training_row_is_trained_on_and_the_plan_says_so(assets, tmp_path):
    """64 rows, no validation split, epochs 1 and max_steps 15: all 64 rows train (none held
    out for the uncertainty metric, which is skipped, saying why), and the plan shows the two
    epochs that max_steps makes (8 steps of 8 samples per epoch)."""
    model, _ = assets
    export = write_synthetic_export(tmp_path / "64.jsonl", 64)
    config = _config(
        (model, export),
        tmp_path / "run",
        batch_unit="samples",
        samples_per_step=8,
        epochs=1,
        max_steps=15,
        uncertainty_samples=32,
    )
    events = []
    recipe = TrainRecipe(config, on_event=lambda k, d: events.append((k, d)))
    recipe.setup()
    recipe.cleanup()
    data = next(d for k, d in events if k == "data")
    lengths = [int(n) for n in recipe.loader.lengths]
    assert len(lengths) == 64 and recipe.heldout_rows == []
    assert sorted(i for row in recipe.loader.epoch_plan(0) for i in row) == list(range(64))
    assert data["plan"] == {
        "train_rows": 64,
        "val_rows": 0,
        "epochs": 2,
        "epochs_requested": 1,
        "max_steps": 15,
        "steps_per_epoch": 8,
        "total_steps": 15,
        "tokens_per_step": round(sum(lengths) / 8),
    }
    assert data["heldout_samples"] == 0 and "no validation split" in data["uncertainty_skipped"]
    # Without max_steps the requested epochs stand.
    events.clear()
    recipe = TrainRecipe(config.model_copy(update={"max_steps": None, "epochs": 3}),
                         on_event=lambda k, d: events.append((k, d)))  # fmt: skip
    recipe.setup()
    recipe.cleanup()
    plan = next(d for k, d in events if k == "data")["plan"]
    assert (plan["epochs"], plan["total_steps"], plan["train_rows"]) == (3, 24, 64)

    # A validation split is counted and measured; the training rows stay all 64.
    validation = write_synthetic_export(tmp_path / "validation.jsonl", 5, seed=7)
    events.clear()
    recipe = TrainRecipe(config.model_copy(update={"validation_file": str(validation)}),
                         on_event=lambda k, d: events.append((k, d)))  # fmt: skip
    recipe.setup()
    recipe.cleanup()
    data = next(d for k, d in events if k == "data")
    assert data["plan"]["train_rows"] == 64 and data["plan"]["val_rows"] == 5
    assert len(recipe.heldout_rows) == 5 and data["uncertainty_skipped"] is None
    assert plan_line(data["plan"]).startswith("plan: 64 training rows, 5 validation rows, 2 ")
