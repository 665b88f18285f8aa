"""Attention over packed documents from ``cu_seqlens``, with no dense mask.

A micro-batch of b rows × t tokens is flattened into one sequence of b·t tokens and
``cu_seqlens`` (int32, (n_docs + 1,)) marks where every document starts: the documents of all
rows, with each row's padding as one more pseudo-document. Attention never crosses a boundary,
so any number of rows per micro-batch is correct, and nothing of size (t × t) is built.

The count of documents is padded to a fixed number by repeating the last boundary (zero-length
documents), and rows are padded to ``max_length``: every micro-batch of a run has the same shapes,
which is what lets ``torch.compile`` keep one graph per decoder block.

Kernels, first available wins (``kernel_for(device)``):
- ``flash_attn``: ``flash_attn_varlen_func`` from the flash-attn package (CUDA);
- ``torch_varlen``: ``torch.nn.attention.varlen.varlen_attn`` (torch ≥ 2.10, CUDA);
- ``flex``: ``flex_attention`` with a block-sparse ``BlockMask`` built from document ids (CUDA,
  compiled); on CPU it has no backward, so it serves only as an inference cross-check;
- ``sdpa_loop``: one causal SDPA call per document (CPU: tests and dev runs; exact, and it reads
  the boundaries on the host, which costs nothing there).

The function is registered with transformers as ``cgd_varlen``. Because no mask function is
registered under that name, transformers skips mask construction (and its host-syncing packed-
sequence detection) entirely; the boundaries reach every layer through the forward kwargs
``cu_seq_lens_q`` / ``max_length_q`` that transformers already threads down for flash-attention.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F

ATTN_NAME = "cgd_varlen"  # the name transformers knows our function by
HAS_FLASH_ATTN = importlib.util.find_spec("flash_attn") is not None


def kernel_for(device: torch.device) -> str:
    if device.type != "cuda":
        return "sdpa_loop"
    if HAS_FLASH_ATTN:
        return "flash_attn"
    if importlib.util.find_spec("torch.nn.attention.varlen") is not None:
        return "torch_varlen"
    return "flex"


def document_ids(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """(total,) int32: the document of every token (zero-length documents own no token)."""
    positions = torch.arange(total, device=cu_seqlens.device, dtype=cu_seqlens.dtype)
    return torch.searchsorted(cu_seqlens[1:], positions, right=True).to(torch.int32)


def document_block_mask(cu_seqlens: torch.Tensor, total: int) -> Any:
    """A flex-attention ``BlockMask``: causal within a document; built once per micro-batch."""
    from torch.nn.attention.flex_attention import create_block_mask

    doc = document_ids(cu_seqlens, total)

    def same_document_causal(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return (doc[q] == doc[kv]) & (q >= kv)

    return create_block_mask(
        same_document_causal, None, None, total, total, device=cu_seqlens.device
    )


def packed_kwargs(cu_seqlens: torch.Tensor, max_doc_len: int, total: int) -> dict[str, Any]:
    """Forward kwargs that carry the document boundaries to every attention layer.

    ``max_doc_len`` is an upper bound (the row length), so it is a constant of the run and never
    needs a device → host copy. The names are transformers' flash-attention kwargs, so the same
    dict also drives its ``flash_attention_2`` path.
    """
    kwargs: dict[str, Any] = {
        "cu_seq_lens_q": cu_seqlens,
        "cu_seq_lens_k": cu_seqlens,
        "max_length_q": max_doc_len,
        "max_length_k": max_doc_len,
    }
    if kernel_for(cu_seqlens.device) == "flex":
        kwargs["cgd_block_mask"] = document_block_mask(cu_seqlens, total)
    return kwargs


# -- kernels: q (T, h, d), k/v (T, h_kv, d) → (T, h, d) ---------------------------------------


def _sdpa_loop(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, scale: float | None
) -> torch.Tensor:
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end == start:
            continue  # a padding entry of cu_seqlens
        # (1, h, n, d) per document: causal attention within it, GQA by head groups.
        o = F.scaled_dot_product_attention(
            q[start:end].transpose(0, 1)[None],
            k[start:end].transpose(0, 1)[None],
            v[start:end].transpose(0, 1)[None],
            is_causal=True,
            scale=scale,
            enable_gqa=True,
        )
        out[start:end] = o[0].transpose(0, 1)
    return out


@functools.cache
def _torch_varlen() -> tuple[Any, dict[str, Any], bool, bool]:
    """torch's varlen_attn and what its signature takes (it moved between releases):
    (function, the causal keyword, GQA without copies, a ``scale`` argument)."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    # torch 2.10: is_causal=True; later: window_size=(-1, 0) means causal.
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    return varlen_attn, causal, "enable_gqa" in params, "scale" in params


def compute_dtype(q: torch.Tensor, v: torch.Tensor) -> torch.dtype:
    """The one dtype every kernel input gets. Under autocast, the autocast dtype: rotary
    embeddings hand q and k over in float32 while v comes out of its projection in bf16, and
    the varlen kernels (flash-attn, torch's) have no autocast rule and need one 16-bit dtype."""
    device = q.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return v.dtype


def _varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu: torch.Tensor,
    max_len: int,
    scale: float | None,
    kernel: str,
) -> torch.Tensor:
    if kernel == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(  # type: ignore[no-any-return]
            q, k, v, cu, cu, max_len, max_len, softmax_scale=scale, causal=True
        )
    varlen_attn, causal, has_gqa, has_scale = _torch_varlen()
    kw: dict[str, Any] = dict(causal)
    if has_scale:
        kw["scale"] = scale
    elif scale is not None:  # torch 2.10 scales by 1/sqrt(d) itself: fold the ratio into q
        q = q * (scale * math.sqrt(q.shape[-1]))
    if has_gqa:
        kw["enable_gqa"] = True
    else:  # older varlen_attn: K/V heads repeated to the query heads
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, **kw)  # type: ignore[no-any-return]


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention interface: query (1, h, T, d), key/value (1, h_kv, T, d) →
    output (1, T, h, d). Without ``cu_seq_lens_q`` (one unpadded document) it is plain causal
    SDPA; transformers gives this function no padding mask, so padded batches (generation) run
    on ``sdpa`` instead (:func:`cgd.train.model.masked_attention`)."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or attention_mask is not None:
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            is_causal=attention_mask is None and query.shape[2] > 1,
            scale=scaling,
            enable_gqa=True,
        )
        return out.transpose(1, 2).contiguous(), None
    assert query.shape[0] == 1, "packed attention expects the micro-batch flattened to one row"
    assert dropout == 0.0, "attention dropout is not supported on packed rows"
    dtype = compute_dtype(query, value)
    # (T, h, d), (T, h_kv, d), all in one dtype
    q, k, v = (x[0].transpose(0, 1).to(dtype) for x in (query, key, value))
    kernel = kernel_for(q.device)
    if kernel == "sdpa_loop":
        out = _sdpa_loop(q, k, v, cu, scaling)
    elif kernel == "flex":
        o = _compiled_flex()(
            query.to(dtype), key.to(dtype), value.to(dtype),
            block_mask=kwargs["cgd_block_mask"], scale=scaling, enable_gqa=True,
        )  # fmt: skip
        return o.transpose(1, 2).contiguous(), None  # flex_attention: (1, h, T, d)
    else:
        out = _varlen(q, k, v, cu, int(kwargs["max_length_q"]), scaling, kernel)
    return out[None], None  # (1, T, h, d)


@functools.cache
def _compiled_flex() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


@functools.cache
def register() -> str:
    """Make ``cgd_varlen`` known to transformers (once per process); returns the name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, varlen_attention_forward)
    return ATTN_NAME
