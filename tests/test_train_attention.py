"""Packed attention from cu_seqlens (no dense mask) equals attention over each document alone."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cgd.train import attention  # noqa: E402
from cgd.train.data import collate, tokenize_export  # noqa: E402
from cgd.train.model import (  # noqa: E402
    SupervisedLoss,
    causal_lm,
    decoder_hidden,
    load_model,
    load_tokenizer,
)
from cgd.train.tiny import make_tiny_model, write_synthetic_export  # noqa: E402

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("attn")
    path = str(make_tiny_model(root / "tiny"))
    tok = load_tokenizer(path)
    samples, _ = tokenize_export(write_synthetic_export(root / "x.jsonl", 7), tok, max_length=1024)
    return path, tok, samples


def _doc_ids(lens):
    return torch.cat([torch.full((n,), i) for i, n in enumerate(lens)])


def test_kernels_match_per_document_sdpa():
    """The CPU kernel and flex with a document BlockMask (forward) vs SDPA per document."""
    torch.manual_seed(0)
    lens = [5, 17, 1, 30, 11]  # + 2 zero-length padding entries in cu_seqlens
    total = sum(lens)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist(), total, total], dtype=torch.int32)
    q = torch.randn(1, 4, total, 8, requires_grad=True)  # (1, h, T, d)
    k = torch.randn(1, 2, total, 8, requires_grad=True)  # (1, h_kv, T, d): GQA
    v = torch.randn(1, 2, total, 8, requires_grad=True)
    kwargs = attention.packed_kwargs(cu, max_doc_len=total, total=total)
    out, _ = attention.varlen_attention_forward(torch.nn.Module(), q, k, v, None, **kwargs)
    ref = []
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        if end > start:
            o = F.scaled_dot_product_attention(
                q[:, :, start:end], k[:, :, start:end], v[:, :, start:end],
                is_causal=True, enable_gqa=True,
            )  # fmt: skip
            ref.append(o.transpose(1, 2))
    ref = torch.cat(ref, dim=1)  # (1, T, h, d)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    # The GPU fallback's mask logic, checked on CPU (flex has no CPU backward: forward only).
    from torch.nn.attention.flex_attention import flex_attention

    with torch.no_grad():
        mask = attention.document_block_mask(cu, total)
        qd, kd, vd = q.detach(), k.detach(), v.detach()
        flex = flex_attention(qd, kd, vd, block_mask=mask, enable_gqa=True).transpose(1, 2)
    torch.testing.assert_close(flex, ref.detach(), atol=1e-5, rtol=1e-5)
    assert attention.document_ids(cu, total).tolist() == _doc_ids(lens).tolist()


@pytest.mark.parametrize("rows_per_micro_batch", [1, 3])
def test_packed_model_equals_documents_alone(setup, rows_per_micro_batch):
    """Fixed-shape micro-batches of several packed rows: every document's logits equal its
    logits alone, and the loss equals the per-document reference."""
    path, tok, samples = setup
    model = load_model(path, dtype=torch.float32, attn_implementation="varlen", device=CPU)
    alone = load_model(path, dtype=torch.float32, attn_implementation="sdpa", device=CPU)
    rows = [samples[0:3], samples[3:5], samples[5:7]][:rows_per_micro_batch]
    width = max(sum(len(s) for s in r) for r in rows) + 9  # padded beyond the longest row
    batch = collate(rows, tok.pad_token_id, width=width, n_docs=4 * len(rows))
    assert batch.input_ids.shape == (len(rows), width)
    assert batch.packed_cu_seqlens.numel() == 4 * len(rows) + 1
    with torch.no_grad():
        hidden = decoder_hidden(
            model, batch.input_ids, batch.position_ids, batch.packed_cu_seqlens
        )  # (b, t, d)
        logits = causal_lm(model).get_output_embeddings()(hidden)
        for r, row in enumerate(rows):
            start = 0
            for s in row:
                one = collate([[s]], tok.pad_token_id)
                ref = alone(input_ids=one.input_ids, use_cache=False).logits[0]
                torch.testing.assert_close(
                    logits[r, start : start + len(s)], ref, atol=1e-5, rtol=1e-5
                )
                start += len(s)
    loss = SupervisedLoss(model, chunk_tokens=64)
    ours = loss(
        batch.input_ids,
        batch.position_ids,
        batch.targets,
        batch.packed_cu_seqlens,
        batch.supervised_index,
        batch.supervised_targets,
    )
    ref = SupervisedLoss(alone, chunk_tokens=64)(batch.input_ids, batch.position_ids, batch.targets)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-5)
    assert batch.supervised_index.numel() % 128 == 0
