"""The training recipe: ``setup()`` → ``train()`` → ``save_checkpoint()`` → ``cleanup()``.

One optimizer step = ``rows_per_step`` rows over all ranks (≈ ``tokens_per_step`` tokens), run
as micro-batches of ``micro_batch_rows`` rows with gradient accumulation. The loss of a step is
Σ NLL over its supervised tokens / their number over *all* micro-batches and ranks, so every
target token weighs the same however the samples were packed or split.

The caller observes and controls the run through two callbacks (the worker forwards them to the
API): ``on_event(type, data)`` with type ``status`` | ``data`` | ``step`` | ``eval`` |
``artifact``, and ``should_stop()``, polled every step (cancel: checkpoint, then stop).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from cgd.train import checkpoint
from cgd.train.config import TrainConfig
from cgd.train.data import Batch, StepLoader, read_jsonl, tokenize_to_store
from cgd.train.evaluate import evaluate_model
from cgd.train.model import (
    CausalLM,
    SupervisedLoss,
    add_lora,
    count_parameters,
    load_lora,
    load_model,
    load_tokenizer,
)
from cgd.train.runtime import (
    Runtime,
    all_reduce_sum,
    barrier,
    destroy,
    init_runtime,
    memory_gib,
    seed_everything,
)
from cgd.train.uncertainty import refinement_uncertainty

logger = logging.getLogger("cgd.train")
EventHook = Callable[[str, dict[str, Any]], None]


def lr_multiplier(
    step: int, *, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float
) -> float:
    """Learning-rate factor for optimizer step ``step`` (0-based): linear warmup, then decay."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decay


def rows_per_step(config: TrainConfig, world_size: int) -> int:
    """Rows per optimizer step, rounded up so every rank runs whole micro-batches."""
    unit = world_size * config.micro_batch_rows
    rows = max(1, config.tokens_per_step // config.max_length)
    return math.ceil(rows / unit) * unit


def train_step(
    module: torch.nn.Module,
    batches: list[Batch],
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    params: list[torch.nn.Parameter],
    grad_clip: float,
    runtime: Runtime,
) -> dict[str, Any]:
    """One optimizer step over this rank's micro-batches; returns metrics over all ranks.

    ``module`` maps (ids, positions, targets) to Σ NLL (SupervisedLoss, maybe DDP-wrapped).
    """
    t0 = time.perf_counter()
    n_supervised, n_tokens = all_reduce_sum(
        [sum(b.n_supervised for b in batches), sum(b.n_tokens for b in batches)], runtime
    )
    # DDP averages gradients over ranks; × world_size turns that into the global sum / N.
    scale = runtime.world_size / n_supervised
    loss_sum = torch.zeros((), device=runtime.device)
    for i, batch in enumerate(batches):
        batch = batch.to(runtime.device)
        # Gradients are all-reduced once per step, in the last micro-batch's backward.
        skip_sync = isinstance(module, DistributedDataParallel) and i < len(batches) - 1
        with module.no_sync() if skip_sync else contextlib.nullcontext():  # type: ignore[operator]
            with runtime.autocast():
                micro_loss = module(batch.input_ids, batch.position_ids, batch.targets)
            (micro_loss * scale).backward()
        loss_sum += micro_loss.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    (total_loss,) = all_reduce_sum([loss_sum.item()], runtime)
    step_s = time.perf_counter() - t0
    return {
        "loss": total_loss / n_supervised,
        "lr": lr,
        "grad_norm": grad_norm.item(),
        "tokens": int(n_tokens),
        "supervised_tokens": int(n_supervised),
        "step_s": step_s,
        "tokens_per_s": n_tokens / step_s,
        "supervised_tokens_per_s": n_supervised / step_s,
        "memory_gib": memory_gib(runtime),
    }


class TrainRecipe:
    def __init__(
        self,
        config: TrainConfig,
        *,
        on_event: EventHook | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self._on_event = on_event
        self._should_stop = should_stop or (lambda: False)
        self.output_dir = Path(config.output_dir)
        self.step = 0  # optimizer steps done
        self.saved_step = -1  # step of the last checkpoint written by this process
        self.history: list[dict[str, Any]] = []  # step metrics of this process's run

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.runtime.is_main and self._on_event is not None:
            self._on_event(kind, data)

    # -- setup: runtime → data → model → optimizer/schedule → resume --------------------------

    def setup(self) -> None:
        cfg = self.config
        self.runtime = rt = init_runtime(cfg.precision)
        seed_everything(cfg.seed)
        if rt.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.json").write_text(cfg.to_json())
            logger.info("config:\n%s", cfg.to_json())
        self.emit(
            "status", {"state": "setup", "world_size": rt.world_size, "device": str(rt.device)}
        )

        self.tokenizer = load_tokenizer(cfg.model_path)
        # Tokenized once into memory-mapped files (one set per rank): the export can be larger
        # than RAM, and only the current step's samples are read.
        samples, stats = tokenize_to_store(
            cfg.train_file,
            self.tokenizer,
            self.output_dir / "tokens" / f"rank{rt.rank}",
            max_length=cfg.max_length,
            mode=cfg.mode,
            layout=cfg.layout,
        )
        self.data_stats = stats.as_dict()
        self.loader = StepLoader(
            samples,
            rows_per_step=rows_per_step(cfg, rt.world_size),
            micro_batch_rows=cfg.micro_batch_rows,
            max_length=cfg.max_length,
            packing=cfg.packing,
            pack_window=cfg.pack_window,
            seed=cfg.seed,
            pad_id=self.tokenizer.pad_token_id,
            rank=rt.rank,
            world_size=rt.world_size,
        )
        self.total_steps = cfg.max_steps or self.loader.total_steps(cfg.epochs)
        self.data_stats |= {
            "rows_per_step": self.loader.rows_per_step,
            "total_steps": self.total_steps,
        }
        logger.info("data: %s", self.data_stats)
        self.emit("data", self.data_stats)

        resume = Path(cfg.resume_from) if cfg.resume_from else None
        # A full fine-tune resumes from the checkpoint's weights; LoRA from the base + adapter.
        weights = str(resume / "model") if resume and cfg.method == "full" else cfg.model_path
        base = load_model(
            weights,
            dtype=rt.param_dtype,
            attn_implementation=cfg.attn_implementation,
            device=rt.device,
        )
        if cfg.gradient_checkpointing:
            base.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        self.model: CausalLM = base
        if cfg.method == "lora":
            self.model = load_lora(base, str(resume / "model")) if resume else add_lora(base, cfg)
        self.model.train()
        trainable, total = count_parameters(self.model)
        logger.info("parameters: %d trainable of %d", trainable, total)
        loss_module = SupervisedLoss(self.model, cfg.loss_chunk_tokens)
        self.train_module: torch.nn.Module = (
            DistributedDataParallel(
                loss_module, device_ids=[rt.device] if rt.device.type == "cuda" else None
            )
            if rt.distributed
            else loss_module
        )

        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.weight_decay,
            fused=rt.device.type == "cuda",
        )
        warmup_steps = math.ceil(cfg.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_multiplier(
                s,
                total_steps=self.total_steps,
                warmup_steps=warmup_steps,
                schedule=cfg.schedule,
                min_ratio=cfg.min_lr_ratio,
            ),
        )
        if resume:
            saved = json.loads((resume / "config.json").read_text())
            changed = {
                k: (saved.get(k), v) for k, v in cfg.model_dump().items() if saved.get(k) != v
            }
            changed.pop("resume_from", None)
            if changed:
                logger.warning("resuming with a changed config (old, new): %s", changed)
            state = checkpoint.load_training_state(resume, rt)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.loader.load_state_dict(state["data"])
            self.step = state["step"]
            logger.info("resumed from %s at step %d", resume, self.step)

    # -- loop ---------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        cfg, rt = self.config, self.runtime
        self.emit(
            "status", {"state": "running", "step": self.step, "total_steps": self.total_steps}
        )
        state = "finished"
        batches_iter = iter(self.loader)
        while self.step < self.total_steps:
            if self._stop_requested():
                state = "cancelled"
                break
            data_step, batches = next(batches_iter)
            assert data_step == self.step, (data_step, self.step)
            metrics = train_step(
                self.train_module,
                batches,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                params=self.params,
                grad_clip=cfg.grad_clip,
                runtime=rt,
            )
            self.step += 1
            metrics["step"] = self.step
            metrics["epoch"] = self.loader.locate(self.step - 1)[0]
            metrics["total_steps"] = self.total_steps
            self.history.append(metrics)
            if rt.is_main and (
                self.step % cfg.log_interval_steps == 0 or self.step == self.total_steps
            ):
                self._log_step(metrics)
            if cfg.checkpoint_interval_steps and self.step % cfg.checkpoint_interval_steps == 0:
                self.save_checkpoint()
            if cfg.eval_interval_steps and self.step % cfg.eval_interval_steps == 0:
                self.evaluate()
        if self.saved_step != self.step:
            self.save_checkpoint()
        result: dict[str, Any] = {"state": state, "step": self.step}
        if state == "finished":
            result["eval"] = self.evaluate()
            result["final_model"] = str(self.export())
        self.emit("status", result)
        return result

    def _stop_requested(self) -> bool:
        local = 1.0 if self.runtime.is_main and self._should_stop() else 0.0
        return all_reduce_sum([local], self.runtime)[0] > 0

    def _log_step(self, metrics: dict[str, Any]) -> None:
        logger.info(
            "step %d/%d loss %.4f lr %.2e grad_norm %.3f tok/s %.0f sup tok/s %.0f mem %.2f GiB",
            metrics["step"],
            self.total_steps,
            metrics["loss"],
            metrics["lr"],
            metrics["grad_norm"],
            metrics["tokens_per_s"],
            metrics["supervised_tokens_per_s"],
            metrics["memory_gib"],
        )
        with (self.output_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        self.emit("step", metrics)

    # -- eval ---------------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """Eval sets + refinement uncertainty, on rank 0 (the others wait)."""
        cfg, rt = self.config, self.runtime
        results: dict[str, Any] = {}
        if rt.is_main:
            out_dir = self.output_dir / "eval" / f"step_{self.step:06d}"
            if cfg.eval_sets:
                results["accuracy"] = evaluate_model(
                    self.model,
                    self.tokenizer,
                    cfg.eval_sets,
                    out_dir=out_dir,
                    max_new_tokens=cfg.eval_max_new_tokens,
                    batch_size=cfg.eval_batch_size,
                    autocast=rt.autocast(),
                    limit=cfg.eval_limit,
                )
                self.emit("artifact", {"kind": "eval_samples", "path": str(out_dir)})
            rows = self._uncertainty_rows()
            if rows:
                results["uncertainty"] = refinement_uncertainty(
                    self.model, self.tokenizer, rows, max_length=cfg.max_length, runtime=rt
                )
            if results:
                results["step"] = self.step
                logger.info("eval: %s", results)
                self.emit("eval", results)
        barrier(rt)
        return results

    def _uncertainty_rows(self) -> list[dict[str, Any]]:
        cfg = self.config
        path = cfg.uncertainty_file or (cfg.train_file if cfg.layout != "messages" else None)
        if path is None or cfg.uncertainty_samples == 0:
            return []
        rows = []
        for row in read_jsonl(path):
            if "messages" in row:
                return []  # a pre-built export has no separate critique to leave out
            if row.get("critique") and row.get("refined_response") and row.get("initial_response"):
                rows.append(row)
            if len(rows) == cfg.uncertainty_samples:
                break
        return rows

    # -- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        path = checkpoint.checkpoint_dir(self.output_dir, self.step)
        checkpoint.save_checkpoint(
            path,
            model=self.model,
            tokenizer=self.tokenizer,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            data_state=self.loader.state_dict(),
            step=self.step,
            config=self.config,
            runtime=self.runtime,
        )
        self.saved_step = self.step
        self.emit("artifact", {"kind": "checkpoint", "path": str(path), "step": self.step})
        return path

    def export(self) -> Path:
        """The final model (LoRA merged) in ``output_dir/final``; the live model is consumed."""
        path = self.output_dir / "final"
        if self.runtime.is_main:
            dtype = torch.bfloat16 if self.config.export_dtype == "bfloat16" else torch.float32
            checkpoint.export_final(self.model, self.tokenizer, path, dtype)
            self.emit("artifact", {"kind": "model", "path": str(path)})
        barrier(self.runtime)
        return path

    def cleanup(self) -> None:
        destroy()


def run_training(
    config: TrainConfig,
    *,
    on_event: EventHook | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """setup → train → cleanup; what the CLI and the worker call."""
    recipe = TrainRecipe(config, on_event=on_event, should_stop=should_stop)
    recipe.setup()
    try:
        return recipe.train()
    finally:
        recipe.cleanup()
