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


def test_varlen_kernel_gets_one_dtype_under_autocast(setup, monkeypatch):
    """Under bf16 autocast rotary embeddings leave q and k in float32 while v is bf16; the
    varlen kernels (flash-attn, torch's) have no autocast rule and reject mixed dtypes. A fake
    kernel with that contract sees one dtype, the autocast one."""
    path, tok, samples = setup
    seen: list[tuple[torch.dtype, ...]] = []

    def strict_varlen(q, k, v, cu_q, cu_k, max_q, max_k, **kw):  # torch's varlen_attn shape
        seen.append((q.dtype, k.dtype, v.dtype))
        if not q.dtype == k.dtype == v.dtype:
            raise RuntimeError(f"mixed dtypes at the kernel: {q.dtype} {k.dtype} {v.dtype}")
        return attention._sdpa_loop(q, k, v, cu_q, kw.get("scale"))

    monkeypatch.setattr(attention, "kernel_for", lambda device: "torch_varlen")
    monkeypatch.setattr(
        attention, "_torch_varlen", lambda: (strict_varlen, {"is_causal": True}, True, True)
    )
    model = load_model(path, dtype=torch.float32, attn_implementation="varlen", device=CPU)
    batch = collate([samples[0:3]], tok.pad_token_id, n_docs=4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        decoder_hidden(model, batch.input_ids, batch.position_ids, batch.packed_cu_seqlens)
    assert seen and all(dtypes == (torch.bfloat16,) * 3 for dtypes in seen), seen


def test_torch_varlen_without_a_scale_argument_scales_q(monkeypatch):
    """torch 2.10's varlen_attn takes no ``scale``: the requested scale is folded into q."""
    torch.manual_seed(0)
    q, k, v = torch.randn(9, 4, 8), torch.randn(9, 2, 8), torch.randn(9, 2, 8)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)

    def old_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, is_causal):  # no scale, no GQA
        assert is_causal and q.shape[1] == k.shape[1]
        return attention._sdpa_loop(q, k, v, cu_q, None)  # 1/sqrt(d), as torch 2.10 does

    monkeypatch.setattr(
        attention, "_torch_varlen", lambda: (old_varlen, {"is_causal": True}, False, False)
    )
    out = attention._varlen(q, k, v, cu, 5, 0.05, "torch_varlen")
    ref = attention._sdpa_loop(q, k, v, cu, 0.05)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_left_padded_rows_equal_rows_alone_in_generation(setup, monkeypatch):
    """The live training model (varlen attention) scores a left-padded batch exactly as each
    prompt alone: transformers gives ``cgd_varlen`` no padding mask (0.35 apart on this tiny
    model), so generation runs on SDPA with the mask, then varlen comes back."""
    from cgd.train import evaluate
    from cgd.train.model import masked_attention

    path, tok, _ = setup
    model = load_model(path, dtype=torch.float32, attn_implementation="varlen", device=CPU)
    long, short = tok("a b c d e f g h i j k l")["input_ids"], tok("x y")["input_ids"]
    width = len(long)
    ids = torch.full((2, width), tok.pad_token_id)
    mask = torch.zeros((2, width), dtype=torch.long)
    ids[0], mask[0] = torch.tensor(long), 1
    ids[1, width - len(short) :], mask[1, width - len(short) :] = torch.tensor(short), 1
    with torch.no_grad(), masked_attention(model):
        padded = model(input_ids=ids, attention_mask=mask).logits[1, -1]
        alone = model(input_ids=torch.tensor([short])).logits[0, -1]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    assert causal_lm(model).config._attn_implementation == attention.ATTN_NAME  # back again
    # generate_hf (in-training evaluation) generates under it.
    during: list[str] = []
    real_generate = model.generate

    def spy(**kwargs):
        during.append(causal_lm(model).config._attn_implementation)
        return real_generate(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    off = torch.autocast("cpu", enabled=False)
    evaluate.generate_hf(model, tok, ["x y", "a b c"], max_new_tokens=2, batch_size=2, autocast=off)
    assert during == ["sdpa"]
