"""GPU checks (skipped without CUDA): bf16 packed attention for each kernel, a bf16-mixed run."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from cgd.train.config import TrainConfig  # noqa: E402
from cgd.train.data import collate, tokenize_export  # noqa: E402
from cgd.train.loop import run_training  # noqa: E402
from cgd.train.model import causal_lm, decoder_hidden, load_model, load_tokenizer  # noqa: E402
from cgd.train.tiny import make_tiny_model, write_synthetic_export  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("attn", ["sdpa", "flex_attention"])
def test_packed_equals_alone_on_gpu(tmp_path, attn):
    path = str(make_tiny_model(tmp_path / "tiny", hidden_size=128))
    tok = load_tokenizer(path)
    samples, _ = tokenize_export(
        write_synthetic_export(tmp_path / "x.jsonl", 4), tok, max_length=1024
    )
    cuda = torch.device("cuda")
    model = load_model(path, dtype=torch.bfloat16, attn_implementation=attn, device=cuda)

    def logits(batch):
        batch = batch.to(cuda)
        with torch.no_grad():
            hidden = decoder_hidden(model, batch.input_ids, batch.position_ids)
            return causal_lm(model).get_output_embeddings()(hidden).float()[0]

    packed = logits(collate([samples], tok.pad_token_id))
    start = 0
    for s in samples:
        alone = logits(collate([[s]], tok.pad_token_id))
        torch.testing.assert_close(packed[start : start + len(s)], alone, atol=3e-2, rtol=3e-2)
        start += len(s)


def test_bf16_mixed_training_on_gpu(tmp_path):
    model = make_tiny_model(tmp_path / "tiny")
    export = write_synthetic_export(tmp_path / "x.jsonl", 48)
    config = TrainConfig(
        model_path=str(model),
        train_file=str(export),
        output_dir=str(tmp_path / "run"),
        max_length=256,
        batch_unit="tokens",
        tokens_per_step=512,
        learning_rate=3e-3,
        max_steps=30,
        schedule="constant",
        uncertainty_samples=2,
    )
    assert run_training(config)["state"] == "finished"
    losses = [
        json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:3]) / 3
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["memory_gib"] > 0
