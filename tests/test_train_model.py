"""Document-separated attention in packed rows, and the chunked supervised-token loss."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cgd.train.data import IGNORE_INDEX, collate, tokenize_export  # noqa: E402
from cgd.train.model import (  # noqa: E402
    SupervisedLoss,
    causal_lm,
    decoder_hidden,
    load_model,
    load_tokenizer,
)
from cgd.train.tiny import make_tiny_model, write_synthetic_export  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("m")
    path = str(make_tiny_model(root / "tiny"))
    tok = load_tokenizer(path)
    samples, _ = tokenize_export(write_synthetic_export(root / "x.jsonl", 6), tok, max_length=1024)
    return path, tok, samples


def _logits(model, batch):
    with torch.no_grad():
        hidden = decoder_hidden(model, batch.input_ids, batch.position_ids)
        return causal_lm(model).get_output_embeddings()(hidden)  # (b, t, V)


# flex_attention on CPU compiles a kernel with inductor (~40 s, needs a C++ compiler).
FLEX_CPU = pytest.param(
    "flex_attention",
    marks=[
        pytest.mark.slow,
        pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs a C++ compiler"),
    ],
)


@pytest.mark.parametrize("attn", ["sdpa", "eager", FLEX_CPU])
def test_packed_sample_logits_equal_alone(setup, attn):
    path, tok, samples = setup
    model = load_model(
        path, dtype=torch.float32, attn_implementation=attn, device=torch.device("cpu")
    )
    row = samples[:4]
    packed = _logits(model, collate([row], tok.pad_token_id))[0]  # (t, V)
    start = 0
    for s in row:
        alone = _logits(model, collate([[s]], tok.pad_token_id))[0]  # (n, V)
        torch.testing.assert_close(packed[start : start + len(s)], alone, atol=1e-5, rtol=1e-5)
        start += len(s)
    # Padded micro-batch of two rows: the shorter row's documents are unaffected by padding.
    two = _logits(model, collate([row, samples[4:5]], tok.pad_token_id))
    torch.testing.assert_close(two[0], packed, atol=1e-5, rtol=1e-5)
    alone = _logits(model, collate([samples[4:5]], tok.pad_token_id))[0]
    torch.testing.assert_close(two[1, : len(samples[4])], alone, atol=1e-5, rtol=1e-5)


def test_without_restarting_positions_documents_would_mix(setup):
    """The control: one causal sequence over the same row changes the second sample's logits."""
    path, tok, samples = setup
    model = load_model(
        path, dtype=torch.float32, attn_implementation="sdpa", device=torch.device("cpu")
    )
    batch = collate([samples[:2]], tok.pad_token_id)
    batch.position_ids = torch.arange(batch.input_ids.shape[1])[None]
    mixed = _logits(model, batch)[0, len(samples[0]) :]
    alone = _logits(model, collate([samples[1:2]], tok.pad_token_id))[0]
    assert (mixed - alone).abs().max() > 1e-3


def test_chunked_loss_equals_full_cross_entropy_and_gradients(setup):
    path, tok, samples = setup
    model = load_model(
        path, dtype=torch.float32, attn_implementation="sdpa", device=torch.device("cpu")
    )
    batch = collate([samples[:3], samples[3:5]], tok.pad_token_id)
    loss_fn = SupervisedLoss(model, chunk_tokens=7)  # many small chunks
    ours = loss_fn(batch.input_ids, batch.position_ids, batch.targets) / batch.n_supervised
    ours.backward()
    grad_ours = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()

    # Reference: full logits per document, alone, HF-style shifted cross-entropy.
    total, n = 0.0, 0
    for s in samples[:5]:
        out = model(input_ids=s.input_ids.long()[None], use_cache=False).logits[0]  # (n, V)
        labels = s.labels()
        total = total + F.cross_entropy(
            out[:-1], labels[1:], ignore_index=IGNORE_INDEX, reduction="sum"
        )
        n += int((labels != IGNORE_INDEX).sum())
    ref = total / n
    ref.backward()
    assert n == batch.n_supervised
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        grad_ours, model.model.layers[0].self_attn.q_proj.weight.grad, atol=1e-6, rtol=1e-4
    )
