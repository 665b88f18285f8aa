"""The training recipe: ``setup()`` → ``train()`` → ``save_checkpoint()`` → ``cleanup()``.

One optimizer step = ``samples_per_step`` samples (``batch_unit=samples``, the default) or
``rows_per_step`` rows (≈ ``tokens_per_step`` tokens, ``batch_unit=tokens``) over all ranks, run
as micro-batches of ``micro_batch_rows`` rows with gradient accumulation. The host never waits
for the device except on logged steps (loss and gradient norm are read there), and the next
steps' batches are built in a background thread. The loss of a step is
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
from torch.distributed.fsdp import FSDPModule
from torch.nn.parallel import DistributedDataParallel

from cgd.curation.eval_sets import parse_eval_set
from cgd.train import checkpoint, parallel
from cgd.train.config import TrainConfig
from cgd.train.data import Batch, Prefetcher, StepLoader, read_jsonl, tokenize_to_store
from cgd.train.evaluate import (
    Generate,
    SetResult,
    accuracy_summary,
    check_vllm_backend,
    evaluate_sets_detailed,
    hf_generator,
    vllm_generator,
)
from cgd.train.model import (
    CausalLM,
    SupervisedLoss,
    add_lora,
    count_parameters,
    load_lora,
    load_model,
    load_tokenizer,
    uses_cu_seqlens,
)
from cgd.train.plan import plan_line, training_plan
from cgd.train.runtime import (
    Runtime,
    all_reduce_sum,
    barrier,
    destroy,
    init_runtime,
    memory_gib,
    seed_everything,
)
from cgd.train.tensorboard import ScalarLog
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


def choose_best(scores: list[tuple[int, float]]) -> int | None:
    """The step of the best validation score among ``(step, score)``; ties go to the earlier
    step (fewer updates away from the base model). None without scores."""
    best: tuple[int, float] | None = None
    for step, score in scores:
        if best is None or score > best[1] or (score == best[1] and step < best[0]):
            best = (step, score)
    return None if best is None else best[0]


def eval_payload(results: dict[str, SetResult]) -> dict[str, Any]:
    """The eval event's per-set fields (the experiments report's contract): greedy accuracy
    (flat, with ``{set}/avg@{k}``), per-problem verdicts, avg@k, unbiased pass@k, no-answers."""
    return {
        "accuracy": accuracy_summary(results),
        "problems": {name: r.problems for name, r in results.items()},
        "avg_at_k": {n: r.avg_at_k for n, r in results.items() if r.avg_at_k is not None},
        "pass_at_k": {n: r.pass_at_k for n, r in results.items() if r.pass_at_k is not None},
        "no_answer": {name: r.no_answer for name, r in results.items()},
        "k": {name: r.k for name, r in results.items()},
        "samples": {n: r.samples for n, r in results.items() if r.samples is not None},
    }


def eval_files(out_dir: Path, results: dict[str, SetResult]) -> dict[str, list[str]]:
    """Per set, the per-sample JSONL files :func:`evaluate_set` wrote (greedy, then sampled)."""
    files: dict[str, list[str]] = {}
    for name, r in results.items():
        paths = [out_dir / f"{name}.jsonl"]
        if r.samples is not None:
            paths.append(out_dir / f"{name}.avg@{r.k}.jsonl")
        files[name] = [str(p) for p in paths if p.exists()]
    return files


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
    counts: dict[str, int] | None = None,
    varlen: bool = False,
    defer_fsdp_sync: bool = True,
) -> dict[str, Any]:
    """One optimizer step over this rank's micro-batches. No host sync: the loss sum and the
    gradient norm come back as device tensors (``finish_metrics`` reads them when logging).

    ``module`` maps (ids, positions, targets, …) to Σ NLL (SupervisedLoss, maybe DDP-wrapped or
    sharded). ``counts``: the step's global sample/token counts (StepLoader.step_counts), which
    every rank knows from the data index; without them one collective sums this rank's counts.
    ``varlen``: the model's attention reads ``cu_seqlens``. ``defer_fsdp_sync``: under FSDP,
    reduce-scatter gradients in the last micro-batch only (fewer collectives; unsharded
    gradients are kept until then).
    """
    if counts is None:
        n_sup, n_tok = all_reduce_sum(
            [sum(b.n_supervised for b in batches), sum(b.n_tokens for b in batches)], runtime
        )
        counts = {"tokens": int(n_tok), "supervised_tokens": int(n_sup)}
    # DDP and FSDP average gradients over ranks; × world_size turns that into the global sum / N.
    scale = runtime.world_size / max(1, counts["supervised_tokens"])
    loss_sum = torch.zeros((), device=runtime.device)
    for i, batch in enumerate(batches):
        batch = batch.to(runtime.device)
        # Gradients are all-reduced (DDP) or reduce-scattered (FSDP, when deferred) once per
        # step, in the last micro-batch's backward.
        last = i == len(batches) - 1
        skip_sync = isinstance(module, DistributedDataParallel) and not last
        if defer_fsdp_sync and isinstance(module, FSDPModule):
            module.set_requires_gradient_sync(last)
        with module.no_sync() if skip_sync else contextlib.nullcontext():  # type: ignore[operator]
            with runtime.autocast():
                micro_loss = module(
                    batch.input_ids,
                    batch.position_ids,
                    batch.targets,
                    batch.packed_cu_seqlens if varlen else None,
                    batch.supervised_index,
                    batch.supervised_targets,
                )
            (micro_loss * scale).backward()
        loss_sum += micro_loss.detach()
    grad_norm = parallel.clip_grad_norm(params, grad_clip)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {**counts, "lr": lr, "loss_sum": loss_sum, "grad_norm": grad_norm}


def finish_metrics(metrics: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """Device tensors → numbers (the one host sync of a logged step)."""
    (loss_sum,) = all_reduce_sum([metrics.pop("loss_sum").item()], runtime)
    metrics["loss"] = loss_sum / max(1, metrics["supervised_tokens"])
    metrics["grad_norm"] = metrics["grad_norm"].item()
    return metrics


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
        self.scalars = ScalarLog(self.output_dir)
        self.step = 0  # optimizer steps done
        self.saved_step = -1  # step of the last checkpoint written by this process
        self.history: list[dict[str, Any]] = []  # step metrics of this process's run
        self.tokens_trained = 0  # input + supervised tokens processed so far (all ranks)
        self.validation: list[tuple[int, float]] = []  # (step, select_on accuracy)
        self.best_path = self.output_dir / "best" / "weights.pt"
        self.selected: dict[str, Any] | None = None  # {"on": set, "step": n} once selected

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.runtime.is_main and self._on_event is not None:
            self._on_event(kind, data)

    # -- setup: runtime → data → model → optimizer/schedule → resume --------------------------

    def setup(self) -> None:
        cfg = self.config
        fsdp = cfg.strategy == "fsdp"
        self.runtime = rt = init_runtime(cfg.precision, process_group=fsdp)
        seed_everything(cfg.seed)
        if rt.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.json").write_text(cfg.to_json())
            logger.info("config:\n%s", cfg.to_json())
        self.emit(
            "status", {"state": "setup", "world_size": rt.world_size, "device": str(rt.device)}
        )
        if cfg.eval_backend == "vllm" and cfg.eval_sets and rt.is_main:
            check_vllm_backend()  # before hours of training, not after

        cuda = rt.device.type == "cuda"
        # Unset knobs resolve by device: compiled and logging every 10 steps on a GPU (a log
        # reads the loss, a device sync), eager and every step on a CPU.
        self.compile = cfg.compile if cfg.compile is not None else cuda
        self.log_every = cfg.log_interval_steps or (10 if cuda else 1)
        self.tokenizer = load_tokenizer(cfg.model_path)
        self.heldout_rows, uncertainty_skipped, val_rows = self._heldout_rows()
        # Tokenized once into memory-mapped files (one set per rank): the export can be larger
        # than RAM, and only the current step's samples are read.
        samples, stats = tokenize_to_store(
            cfg.train_file,
            self.tokenizer,
            self.output_dir / "tokens" / f"rank{rt.rank}",
            max_length=cfg.max_length,
            mode=cfg.mode,
            layout=cfg.layout,
            common_modes=cfg.common_modes,
        )
        self.data_stats: dict[str, Any] = stats.as_dict()
        # The experiments report compares runs by these (same rows, same number of steps).
        self.data_stats |= {
            "rows": len(stats.row_ids),
            "rows_sha256": stats.rows_sha256(),
            "dropped": stats.dropped(),
            "common_modes": [str(m.value) for m in cfg.common_modes or []] or None,
        }
        by_samples = cfg.batch_unit == "samples"
        self.loader = StepLoader(
            samples,
            rows_per_step=0 if by_samples else rows_per_step(cfg, rt.world_size),
            samples_per_step=cfg.samples_per_step if by_samples else None,
            micro_batch_rows=cfg.micro_batch_rows,
            max_length=cfg.max_length,
            packing=cfg.packing,
            pack_window=cfg.pack_window,
            seed=cfg.seed,
            pad_id=self.tokenizer.pad_token_id,
            rank=rt.rank,
            world_size=rt.world_size,
            fixed_shapes=self.compile,
        )
        self.plan = training_plan(
            self.loader, cfg, train_rows=len(stats.row_ids), val_rows=val_rows
        )
        self.total_steps = self.plan["total_steps"]
        extra: dict[str, Any] = {
            "batch_unit": cfg.batch_unit,
            "samples_per_step": cfg.samples_per_step if by_samples else None,
            "rows_per_step": None if by_samples else self.loader.rows_per_step,
            "total_steps": self.total_steps,
            "heldout_samples": len(self.heldout_rows),
            "uncertainty_skipped": uncertainty_skipped,
            "plan": self.plan,
        }
        self.data_stats.update(extra)
        # The plan is announced before the first step: the CLI's first lines and, through the
        # data event, the run's status (plan).
        logger.info("%s", plan_line(self.plan))
        logger.info("data: %s", self.data_stats)
        if uncertainty_skipped:
            logger.info("refinement uncertainty skipped: %s", uncertainty_skipped)
        self.emit("data", self.data_stats)

        resume = Path(cfg.resume_from) if cfg.resume_from else None
        # A full fine-tune resumes from the checkpoint's weights; LoRA from the base + adapter;
        # FSDP from the base, then its shards (below).
        full_weights = resume and cfg.method == "full" and not fsdp
        weights = str(resume / "model") if full_weights else cfg.model_path  # type: ignore[operator]
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
            lora_dir = resume and not fsdp
            self.model = load_lora(base, str(resume / "model")) if lora_dir else add_lora(base, cfg)  # type: ignore[operator]
        self.model.train()
        self.varlen = uses_cu_seqlens(self.model)
        trainable, total = count_parameters(self.model)
        logger.info("parameters: %d trainable of %d", trainable, total)
        loss_module = SupervisedLoss(self.model, cfg.loss_chunk_tokens)
        self.train_module = parallel.wrap(loss_module, self.model, cfg, rt)
        if self.compile:
            parallel.compile_blocks(self.model)

        # After sharding: FSDP replaced the parameters with sharded ones (DTensors).
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.weight_decay,
            fused=rt.device.type == "cuda" and not cfg.fsdp_cpu_offload,
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
            if fsdp:
                parallel.load_sharded(resume / "sharded", self.train_module, self.optimizer)
            state = checkpoint.load_training_state(resume, rt)
            if not fsdp:
                self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.loader.load_state_dict(state["data"])
            self.step = state["step"]
            # The data plan is a function of the step: the tokens of the steps already done.
            self.tokens_trained = sum(
                self.loader.step_counts(s)["tokens"] for s in range(self.step)
            )
            # Validation scores so far (the best weights stay in output_dir/best).
            saved_validation = self.best_path.parent / "validation.json"
            if cfg.select_on and saved_validation.exists():
                pairs = json.loads(saved_validation.read_text())
                self.validation = [(int(a), float(b)) for a, b in pairs if int(a) <= self.step]
            logger.info("resumed from %s at step %d", resume, self.step)

    # -- loop ---------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        cfg, rt = self.config, self.runtime
        self.emit(
            "status", {"state": "running", "step": self.step, "total_steps": self.total_steps}
        )
        state = "finished"
        batches = (
            Prefetcher(self.loader, self.step, pin=rt.device.type == "cuda")
            if cfg.prefetch
            else None
        )
        since = {"t": time.perf_counter(), "steps": 0, "tokens": 0, "supervised": 0}
        try:
            while self.step < self.total_steps:
                log_now = (self.step + 1) % self.log_every == 0 or (
                    self.step + 1 == self.total_steps
                )
                # Every step in one process (a host call); under several ranks the agreement is
                # a collective, so it waits for the logged steps, which sync anyway.
                if (not rt.distributed or log_now) and self._stop_requested():
                    state = "cancelled"
                    break
                data_step, micro = (
                    batches.next() if batches else (self.step, self.loader.micro_batches(self.step))
                )
                assert data_step == self.step, (data_step, self.step)
                metrics = train_step(
                    self.train_module,
                    micro,
                    optimizer=self.optimizer,
                    scheduler=self.scheduler,
                    params=self.params,
                    grad_clip=cfg.grad_clip,
                    runtime=rt,
                    counts=self.loader.step_counts(self.step),
                    varlen=self.varlen,
                    defer_fsdp_sync=cfg.fsdp_defer_grad_sync,
                )
                self.step += 1
                self.tokens_trained += metrics["tokens"]
                since["steps"] += 1
                since["tokens"] += metrics["tokens"]
                since["supervised"] += metrics["supervised_tokens"]
                if log_now:
                    metrics = finish_metrics(metrics, rt)  # waits for the device
                    elapsed = time.perf_counter() - since["t"]
                    metrics |= {
                        "step": self.step,
                        "epoch": self.loader.locate(self.step - 1)[0],
                        "total_steps": self.total_steps,
                        "step_s": elapsed / since["steps"],
                        "tokens_per_s": since["tokens"] / elapsed,
                        "supervised_tokens_per_s": since["supervised"] / elapsed,
                        "memory_gib": memory_gib(rt),
                        "tokens_trained": self.tokens_trained,
                    }
                    self.history.append(metrics)
                    if rt.is_main:
                        self._log_step(metrics)
                    since = {"t": time.perf_counter(), "steps": 0, "tokens": 0, "supervised": 0}
                if cfg.checkpoint_interval_steps and self.step % cfg.checkpoint_interval_steps == 0:
                    self.save_checkpoint()
                if cfg.eval_interval_steps and self.step % cfg.eval_interval_steps == 0:
                    self.evaluate()
                if self._validation_due():
                    self.validate()
        finally:
            if batches:
                batches.close()
        if self.saved_step != self.step:
            self.save_checkpoint()
        result: dict[str, Any] = {"state": state, "step": self.step}
        if state == "finished" and cfg.select_on:
            if not self.validation or self.validation[-1][0] != self.step:
                self.validate()
            self.selected = self.restore_best()
            result["selected"] = self.selected
        if state == "finished":
            # Eval sets run on the exported model under FSDP (rank 0) and on vLLM.
            if cfg.strategy == "fsdp" or cfg.eval_backend == "vllm":
                result["final_model"] = str(self.export())
                result["eval"] = self.evaluate(final_model=Path(result["final_model"]))
            else:
                result["eval"] = self.evaluate()
                result["final_model"] = str(self.export())
        self.emit("status", result)
        return result

    # -- checkpoint selection on a validation set ---------------------------------------------

    def _validation_due(self) -> bool:
        cfg = self.config
        if not cfg.select_on:
            return False
        every = cfg.select_every_steps or cfg.checkpoint_interval_steps
        return bool(every) and self.step % every == 0

    def validate(self) -> float:
        """Greedy accuracy on ``select_on`` at this step (rank 0 generates, every rank gets the
        score); the best weights so far are kept in ``output_dir/best``."""
        cfg, rt = self.config, self.runtime
        assert cfg.select_on is not None
        spec = parse_eval_set(cfg.select_on)
        score = [0.0]
        if rt.is_main:
            out_dir = self.output_dir / "select" / f"step_{self.step:06d}"
            results = evaluate_sets_detailed(
                [spec], self.tokenizer, self._live_generator(), out_dir=out_dir,
                limit=cfg.eval_limit,
            )  # fmt: skip
            score = [results[spec.name].accuracy]
        (value,) = all_reduce_sum(score, rt)  # only rank 0 contributed
        improved = choose_best([*self.validation, (self.step, value)]) == self.step
        self.validation.append((self.step, value))
        if rt.is_main:
            if improved:
                # Weights only (CPU, on disk): the optimizer state is not needed to evaluate.
                self.best_path.parent.mkdir(parents=True, exist_ok=True)
                state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
                torch.save({"step": self.step, "state": state}, self.best_path)
            (self.best_path.parent / "validation.json").write_text(json.dumps(self.validation))
            self.emit(
                "eval",
                {"select_on": spec.name, "step": self.step, "validation_accuracy": value},
            )
            logger.info("select_on %s at step %d: %.4f", spec.name, self.step, value)
        barrier(rt)
        return value

    def restore_best(self) -> dict[str, Any]:
        """Load the best validated weights into the live model (when not the last step's), so
        the final evaluation and the exported model are the selected checkpoint's."""
        assert self.config.select_on is not None
        best = choose_best(self.validation)
        assert best is not None
        if best != self.step:
            saved = torch.load(self.best_path, map_location="cpu", weights_only=True)
            assert saved["step"] == best, (saved["step"], best)
            self.model.load_state_dict(saved["state"])
            logger.info("selected step %d on %s (last step %d)", best, self.config.select_on,
                        self.step)  # fmt: skip
        return {"on": parse_eval_set(self.config.select_on).name, "step": best}

    def _live_generator(self) -> Generate:
        cfg = self.config
        return hf_generator(
            self.model,
            self.tokenizer,
            max_new_tokens=cfg.eval_max_new_tokens,
            batch_size=cfg.eval_batch_size,
            autocast=self.runtime.autocast(),
            seed=cfg.seed,
        )

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
        self.scalars.step(metrics)
        self.emit("step", metrics)

    # -- eval ---------------------------------------------------------------------------------

    def evaluate(self, final_model: Path | None = None) -> dict[str, Any]:
        """Eval sets + refinement uncertainty on held-out rows, on rank 0 (the others wait).

        Under FSDP the uncertainty forward passes run on every rank (each gathers the shards the
        others hold), and eval sets run once, on the exported ``final_model``.
        """
        cfg, rt = self.config, self.runtime
        fsdp = cfg.strategy == "fsdp"
        results: dict[str, Any] = {}
        uncertainty = None
        if self.heldout_rows and (fsdp or rt.is_main):
            with parallel.unsharded(self.train_module):
                uncertainty = refinement_uncertainty(
                    self.model,
                    self.tokenizer,
                    self.heldout_rows,
                    max_length=cfg.max_length,
                    runtime=rt,
                )
        if rt.is_main:
            out_dir = self.output_dir / "eval" / f"step_{self.step:06d}"
            on_vllm = cfg.eval_backend == "vllm" and final_model is not None
            if cfg.eval_sets and on_vllm:
                assert final_model is not None
                with vllm_generator(
                    str(final_model), self.tokenizer, cfg.eval_max_new_tokens, out_dir, cfg.seed
                ) as generate:
                    detailed = evaluate_sets_detailed(
                        cfg.eval_sets, self.tokenizer, generate, out_dir=out_dir,
                        limit=cfg.eval_limit,
                    )  # fmt: skip
                results |= eval_payload(detailed)
                self._emit_eval_dir(out_dir, detailed)
            elif cfg.eval_sets and (not fsdp or final_model is not None):
                model = self.model
                if final_model is not None:
                    model = load_model(
                        str(final_model),
                        dtype=rt.param_dtype,
                        attn_implementation="sdpa",
                        device=rt.device,
                    )
                generate = hf_generator(
                    model,
                    self.tokenizer,
                    max_new_tokens=cfg.eval_max_new_tokens,
                    batch_size=cfg.eval_batch_size,
                    autocast=rt.autocast(),
                    seed=cfg.seed,
                )
                detailed = evaluate_sets_detailed(
                    cfg.eval_sets, self.tokenizer, generate, out_dir=out_dir, limit=cfg.eval_limit
                )
                results |= eval_payload(detailed)
                self._emit_eval_dir(out_dir, detailed)
            elif cfg.eval_sets:
                logger.info("fsdp: eval sets run on the final model, not at step %d", self.step)
            if uncertainty is not None:
                results["uncertainty"] = uncertainty
            if results:
                results["step"] = self.step
                # Which checkpoint the numbers are of: the validated best (final eval only).
                results["selected"] = self.selected
                logger.info("eval: %s", {k: v for k, v in results.items() if k != "problems"})
                self.scalars.eval(results, self.step)
                self.emit("eval", results)
        barrier(rt)
        return results

    def _emit_eval_dir(self, out_dir: Path, results: dict[str, SetResult]) -> None:
        self.emit("artifact", {"kind": "eval_samples", "path": str(out_dir)})  # older readers
        self.emit(
            "artifact",
            {
                "kind": "eval_dir",
                "path": str(out_dir),
                "step": self.step,
                "files": eval_files(out_dir, results),
            },
        )

    def _heldout_rows(self) -> tuple[list[dict[str, Any]], str | None, int]:
        """(validation rows for the uncertainty metric, why the metric is skipped or None,
        rows in the validation file), from one pass over that file.

        Only the validation split is ever measured: no row of the train file is held out of
        training (it once took the file's last rows, silently halving a small training set).
        """
        cfg = self.config
        heldout = cfg.validation_file or cfg.uncertainty_file
        n_rows, rows = 0, list[dict[str, Any]]()
        for r in read_jsonl(heldout) if heldout else ():
            n_rows += 1
            if len(rows) < cfg.uncertainty_samples and _usable_for_uncertainty(r):
                rows.append(r)
        if cfg.uncertainty_samples == 0:
            return [], "uncertainty_samples is 0", n_rows
        if cfg.layout == "messages":
            return [], "a messages export has no separate critique to leave out", n_rows
        if heldout is None:
            return [], "no validation split (no training row is held out for it)", n_rows
        if not rows:
            reason = "no validation row has an initial response, a critique and a refinement"
            return [], reason, n_rows
        return rows, None, n_rows

    # -- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        path = checkpoint.checkpoint_dir(self.output_dir, self.step)
        self.loader.next_step = self.step  # the data position is the step (prefetch runs ahead)
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
            sharded_module=self.train_module if self.config.strategy == "fsdp" else None,
        )
        self.saved_step = self.step
        self.emit("artifact", {"kind": "checkpoint", "path": str(path), "step": self.step})
        return path

    def export(self) -> Path:
        """The final model (LoRA merged) in ``output_dir/final``; the live model is consumed."""
        cfg, rt = self.config, self.runtime
        path = self.output_dir / "final"
        dtype = torch.bfloat16 if cfg.export_dtype == "bfloat16" else torch.float32
        model = self.model
        if cfg.strategy == "fsdp":
            # Every rank takes part in gathering the full weights; rank 0 receives them on CPU
            # and loads them into a fresh CPU copy of the model (needs ~2× fp32 model in RAM).
            full = parallel.full_state_dict(self.train_module)
            if rt.is_main:
                cpu = torch.device("cpu")
                model = load_model(
                    cfg.model_path, dtype=torch.float32, attn_implementation="sdpa", device=cpu
                )
                if cfg.method == "lora":
                    model = add_lora(model, cfg)
                weights = {k.removeprefix("model."): v for k, v in full.items()}
                missing, unexpected = model.load_state_dict(weights, strict=False)
                assert not unexpected and all("lm_head" in k for k in missing), (
                    missing,
                    unexpected,
                )
        if rt.is_main:
            checkpoint.export_final(model, self.tokenizer, path, dtype)
            self.emit("artifact", {"kind": "model", "path": str(path)})
        barrier(rt)
        return path

    def cleanup(self) -> None:
        self.scalars.close()
        destroy()


def _usable_for_uncertainty(row: dict[str, Any]) -> bool:
    return bool(row.get("critique") and row.get("refined_response") and row.get("initial_response"))


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
