"""The student model, document-separated attention and the loss on supervised tokens only.

Attention across packed documents. Rows hold several samples; none may attend to another.
``varlen`` (the default; cgd/train/attention.py) flattens the micro-batch into one sequence and
hands the document boundaries (``cu_seqlens``) to a varlen kernel: no mask is built at all, and
any number of rows per micro-batch is correct. The other backends are transformers' own: we
pass no attention mask and position ids that restart at 0 for each document. transformers 5
turns exactly that into a document mask for every attention backend
(``masking_utils.find_packed_sequence_indices``): a block-diagonal causal boolean mask for
``sdpa``/``eager``, a block-sparse ``BlockMask`` for ``flex_attention``, varlen ``cu_seqlens``
for ``flash_attention_2``. Rotary embeddings read the same position ids, so a packed sample's
logits equal its logits alone (tests/test_train_attention.py proves it for sdpa and eager).
``use_cache=False`` is required: with a cache the detection is skipped.

Loss. The decoder's hidden states are gathered at supervised positions only and projected with
``lm_head`` in chunks of ``chunk_tokens`` rows under activation checkpointing, so the (tokens ×
vocab) logits exist for at most one chunk at a time and never for masked tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from cgd.train import attention
from cgd.train.config import TrainConfig
from cgd.train.data import IGNORE_INDEX, Batch

CausalLM = PreTrainedModel | PeftModel  # what the trainer trains: a transformers model or peft

# -- loading -----------------------------------------------------------------------------------


def load_tokenizer(path: str) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    path: str, *, dtype: torch.dtype, attn_implementation: str, device: torch.device
) -> PreTrainedModel:
    if attn_implementation == "varlen":
        attn_implementation = attention.register()
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation=attn_implementation, device_map=device
    )
    return model


def add_lora(model: PreTrainedModel, config: TrainConfig) -> PeftModel:
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def load_lora(model: PreTrainedModel, adapter_dir: str) -> PeftModel:
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)


def causal_lm(model: nn.Module) -> Any:
    """The transformers *ForCausalLM under a peft wrapper (or the model itself)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


# -- forward and loss --------------------------------------------------------------------------


def decoder_hidden(
    model: nn.Module,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    cu_seqlens: torch.Tensor | None = None,
) -> torch.Tensor:
    """Last hidden states (b, t, d); documents kept apart by the restarting position ids, or,
    given ``cu_seqlens`` (the micro-batch's flattened boundaries), by varlen attention."""
    decoder = causal_lm(model).get_decoder()
    if cu_seqlens is None:
        out = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        return cast(torch.Tensor, out.last_hidden_state)
    b, t = input_ids.shape
    # (1, b·t): rows back to back; cu_seqlens already carries each row's offset.
    kwargs = attention.packed_kwargs(cu_seqlens, max_doc_len=t, total=b * t)
    out = decoder(
        input_ids=input_ids.reshape(1, b * t),
        position_ids=position_ids.reshape(1, b * t),
        use_cache=False,
        **kwargs,
    )
    return cast(torch.Tensor, out.last_hidden_state.view(b, t, -1))


def uses_cu_seqlens(model: nn.Module) -> bool:
    """Whether the attention backend reads document boundaries (else: position ids)."""
    impl = causal_lm(model).config._attn_implementation
    return impl in (attention.ATTN_NAME, "flash_attention_2")


@contextlib.contextmanager
def masked_attention(model: nn.Module) -> Iterator[None]:
    """Run on ``sdpa`` (with transformers' padding masks) inside the block, then switch back.

    transformers builds no mask for ``cgd_varlen`` (no mask function is registered under that
    name: training must not pay for one), so a left-padded batch would attend to its padding.
    Generation on the live training model therefore borrows ``sdpa``, which reads the same
    weights with the mask transformers makes for it.
    """
    lm = causal_lm(model)
    previous = lm.config._attn_implementation
    if previous != attention.ATTN_NAME:
        yield
        return
    lm.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        lm.set_attn_implementation(previous)


def supervised_positions(
    hidden: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states (n, d) and target ids (n,) at the n supervised positions."""
    keep = targets != IGNORE_INDEX  # (b, t)
    return hidden[keep], targets[keep]


def _chunk_ce_sum(lm_head: nn.Module, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = lm_head(h).float()  # (c, V): fp32 for a stable log-softmax
    return F.cross_entropy(logits, y, reduction="sum", ignore_index=IGNORE_INDEX)


def chunked_cross_entropy_sum(
    lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk_tokens: int
) -> torch.Tensor:
    """Σ −log p(target) over rows of ``hidden`` (n, d); logits live one chunk at a time."""
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_tokens):
        h, y = hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens]
        # Recomputed in backward: only the (c, d) slice is kept, not the (c, V) logits.
        total = total + checkpoint(_chunk_ce_sum, lm_head, h, y, use_reentrant=False)
    return total


class SupervisedLoss(nn.Module):
    """Wraps the model so DDP sees one forward: (ids, positions, targets) → Σ NLL (fp32 scalar).

    The caller divides by the number of supervised tokens of the whole optimizer step.
    """

    def __init__(self, model: nn.Module, chunk_tokens: int) -> None:
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        targets: torch.Tensor,
        cu_seqlens: torch.Tensor | None = None,
        supervised_index: torch.Tensor | None = None,
        supervised_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden = decoder_hidden(self.model, input_ids, position_ids, cu_seqlens)  # (b, t, d)
        if supervised_index is None:
            h, y = supervised_positions(hidden, targets)  # (n, d), (n,)
        else:
            # Positions found on the host at collate time: no boolean indexing (a device sync),
            # padded with targets -100 that cross_entropy ignores.
            h = hidden.flatten(0, 1).index_select(0, supervised_index)  # (n_pad, d)
            assert supervised_targets is not None  # given together with supervised_index
            y = supervised_targets
        lm_head = causal_lm(self.model).get_output_embeddings()
        return chunked_cross_entropy_sum(lm_head, h, y, self.chunk_tokens)


@torch.no_grad()
def token_entropy_and_nll(
    model: nn.Module, batch: Batch, chunk_tokens: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per supervised position: predictive entropy H(p(·|prefix)) and −log p(target), both (n,)."""
    cu = batch.packed_cu_seqlens if uses_cu_seqlens(model) else None
    hidden = decoder_hidden(model, batch.input_ids, batch.position_ids, cu)
    h, y = supervised_positions(hidden, batch.targets)
    lm_head = causal_lm(model).get_output_embeddings()
    entropies, nlls = [], []
    for start in range(0, h.shape[0], chunk_tokens):
        logp = torch.log_softmax(lm_head(h[start : start + chunk_tokens]).float(), dim=-1)  # (c, V)
        entropies.append(-(logp.exp() * logp).sum(-1))
        nlls.append(-logp.gather(-1, y[start : start + chunk_tokens, None]).squeeze(-1))
    return torch.cat(entropies), torch.cat(nlls)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
