"""The one training config: every knob with its default and a line of help.

Logged at the start of a run and saved (JSON) in every checkpoint. Defaults follow the reference
CGD recipe (docs/method.md, "Training defaults"): full fine-tune, learning rate 1e-6, one epoch,
sequence packing. Where the paper is silent the default is marked "ours" in the help text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cgd.enums import ExportMode

Mode = ExportMode


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # -- what to train on --------------------------------------------------------------------
    model_path: str = Field(
        description="Student model: a local Hugging Face directory (or hub id)."
    )
    train_file: str = Field(description="Export JSONL: layout `messages` or `native` rows.")
    layout: Literal["auto", "messages", "native"] = Field(
        "auto", description="Export layout; `auto` looks at the first row."
    )
    mode: Mode = Field(
        Mode.cgd,
        description="Training format for native rows (cgd|sft|distill|cft|no-critique); "
        "`messages` exports are already built for one mode.",
    )
    common_modes: list[Mode] | None = Field(
        None,
        description="Native rows only: train only on the rows every listed mode can use "
        "(fields present, sample fits max_length), so the runs of an experiment, one per mode, "
        "train on the identical row set. Must include `mode`.",
    )

    # -- method ------------------------------------------------------------------------------
    method: Literal["full", "lora"] = Field("full", description="Full fine-tune or LoRA (peft).")
    lora_r: int = Field(16, description="LoRA rank.")
    lora_alpha: int = Field(32, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(0.05, description="Dropout on the LoRA input.")
    lora_targets: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],  # fmt: skip
        description="Module names that get LoRA adapters (all linear layers of Llama/Qwen2).",
    )

    # -- optimisation ------------------------------------------------------------------------
    learning_rate: float = Field(1e-6, description="Peak learning rate (paper: 1e-6).")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Decay after warmup, to min_lr_ratio * peak."
    )
    warmup_ratio: float = Field(
        0.1, description="Fraction of steps with linear warmup (ours, as CFT)."
    )
    min_lr_ratio: float = Field(0.0, description="Final learning rate as a fraction of the peak.")
    weight_decay: float = Field(0.0, description="AdamW weight decay (LLaMA-Factory default: 0).")
    adam_beta1: float = Field(0.9, description="AdamW beta1.")
    adam_beta2: float = Field(0.999, description="AdamW beta2.")
    grad_clip: float = Field(1.0, description="Clip the global gradient norm to this (0: off).")
    epochs: int = Field(1, description="Passes over the export (paper: 1).")
    max_steps: int | None = Field(
        None, description="Stop after this many optimizer steps (overrides epochs)."
    )

    # -- batching ----------------------------------------------------------------------------
    batch_unit: Literal["samples", "tokens"] = Field(
        "samples",
        description="What an optimizer step counts: `samples` (samples_per_step triplets, as the "
        "reference trains every baseline, so every mode makes the same number of steps on the "
        "same triplets) or `tokens` (tokens_per_step, i.e. whole packed rows).",
    )
    samples_per_step: int = Field(
        64, description="Samples per optimizer step over all ranks (batch_unit=samples; paper: 64)."
    )
    tokens_per_step: int = Field(
        65536,
        description="Tokens per optimizer step over all ranks (batch_unit=tokens): rows_per_step = "
        "tokens_per_step / max_length (64k = 16 rows of 4096 ≈ the paper's batch of 64 samples).",
    )
    max_length: int = Field(4096, description="Tokens per row (and the longest sample kept).")
    micro_batch_rows: int = Field(
        1, ge=1, description="Rows per forward pass; the rest is accumulation."
    )
    packing: bool = Field(
        True,
        description="Pack samples into rows (documents kept apart); off: one sample per row, "
        "so a step holds rows_per_step samples.",
    )
    pack_window: int = Field(1024, description="Samples per best-fit packing window (ours).")
    seed: int = Field(0, description="Seed for init, shuffling and dropout.")

    # -- model / numerics --------------------------------------------------------------------
    precision: Literal["auto", "fp32", "bf16-mixed", "bf16"] = Field(
        "auto",
        description="auto: bf16-mixed on CUDA (fp32 master weights + bf16 autocast), fp32 on CPU; "
        "bf16: bf16 weights too (less memory, less exact).",
    )
    attn_implementation: Literal[
        "varlen", "sdpa", "eager", "flex_attention", "flash_attention_2"
    ] = Field(
        "varlen",
        description="Attention kernel; each keeps packed documents apart. varlen (ours): document "
        "boundaries to flash-attn / torch varlen / flex on GPU, per-document SDPA on CPU, no "
        "mask; the others: transformers' masks derived from the position ids.",
    )
    compile: bool | None = Field(
        None,
        description="torch.compile every decoder block (rows padded to max_length so shapes are "
        "fixed); null: on with CUDA (worth it there), off on a CPU (slow to start).",
    )
    prefetch: bool = Field(
        True, description="Build the next steps' batches in a background thread (pinned on GPU)."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward.")
    loss_chunk_tokens: int = Field(
        4096,
        description="Supervised positions per lm_head/cross-entropy chunk (bounds logit memory).",
    )

    # -- parallelism ---------------------------------------------------------------------------
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="ddp: every rank holds the whole model and optimizer; fsdp: FSDP2, one shard "
        "unit per transformer block, parameters/gradients/optimizer state split over ranks.",
    )
    fsdp_cpu_offload: bool = Field(
        False,
        description="fsdp: keep sharded parameters, gradients and optimizer state in CPU memory "
        "(the optimizer steps on the CPU); for models that do not fit otherwise.",
    )
    fsdp_defer_grad_sync: bool = Field(
        True,
        description="fsdp: reduce-scatter gradients once per step, in the last micro-batch "
        "(off: every micro-batch, less memory for unsharded gradients, more collectives).",
    )
    fsdp_reshard_after_forward: bool = Field(
        True,
        description="fsdp: free gathered block weights after forward (ZeRO-3; off: ZeRO-2, more "
        "memory, one all-gather less per block in backward).",
    )

    # -- evaluation --------------------------------------------------------------------------
    eval_sets: list[str] = Field(
        default_factory=list, description="Eval sets (math500, amc23, aime24) or JSONL paths."
    )
    eval_max_new_tokens: int = Field(
        8192, description="Generation budget per problem (paper: 8k/16k)."
    )
    eval_backend: Literal["hf", "vllm"] = Field(
        "hf",
        description="hf: transformers generate on the live model; vllm: the exported final "
        "model served by vLLM (the paper's engine; offline engine where importable, else a "
        "server from the vLLM virtualenv). Evaluations during training stay on hf.",
    )
    eval_batch_size: int = Field(
        32, description="Prompts per generate() batch (in-training eval uses transformers)."
    )
    eval_limit: int | None = Field(
        None, description="Evaluate only the first N problems of each set."
    )
    eval_interval_steps: int = Field(0, description="Evaluate every N steps (0: only at the end).")
    select_on: str | None = Field(
        None,
        description="An eval-set spec used as validation set: evaluated every "
        "select_every_steps steps and at the end; the final eval sets are reported on the "
        "checkpoint that scored best on it (ties: the earlier step).",
    )
    select_every_steps: int = Field(
        0, ge=0, description="Validation interval for select_on (0: at checkpoints only)."
    )
    validation_file: str | None = Field(
        None,
        description="Held-out native JSONL (the validation split) for the refinement-uncertainty "
        "metric.",
    )
    uncertainty_file: str | None = Field(
        None,
        description="Deprecated alias of validation_file (kept for old configs).",
    )
    uncertainty_samples: int = Field(
        32,
        description="Validation rows the uncertainty metric measures (0: off). Without a "
        "validation file the metric is skipped: no training row is ever held out for it.",
    )

    # -- checkpoints / output ----------------------------------------------------------------
    output_dir: str = Field("runs/cgd", description="Checkpoints, metrics and eval logs go here.")
    checkpoint_interval_steps: int = Field(
        0, description="Checkpoint every N steps (0: only at the end)."
    )
    resume_from: str | None = Field(
        None,
        description="Checkpoint directory to resume from (exact: weights, optimizer, RNG, data).",
    )
    export_dtype: Literal["float32", "bfloat16"] = Field(
        "bfloat16",
        description="dtype of the final model (merged for LoRA) written to output_dir/final.",
    )
    log_interval_steps: int | None = Field(
        None,
        ge=1,
        description="Log metrics (a device sync) every N steps; null: 10 with CUDA, 1 on a CPU "
        "(where reading a loss costs nothing). The last step is always logged.",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.tokens_per_step < self.max_length:
            raise ValueError("tokens_per_step must be at least max_length (one row)")
        if self.batch_unit == "samples" and self.samples_per_step < 1:
            raise ValueError("samples_per_step must be at least 1")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")
        if self.common_modes is not None and self.layout == "messages":
            raise ValueError("common_modes needs native rows (layout native or auto), not messages")
        if self.common_modes is not None and self.mode not in self.common_modes:
            raise ValueError(f"common_modes must include the run's mode {self.mode.value!r}")
        if self.select_on is not None and self.strategy == "fsdp":
            raise ValueError("select_on needs the live model (strategy ddp), not fsdp")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def field_help() -> dict[str, str]:
    """Field name → help text (for the CLI and docs)."""
    return {name: f.description or "" for name, f in TrainConfig.model_fields.items()}


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` → (key, value); the value is parsed as JSON when it can be (numbers, lists)."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise ValueError(f"override {text!r} is not key=value")
    key = key.strip().replace("-", "_")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a YAML/JSON config file (optional) and apply overrides (None values are ignored)."""
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**data)
