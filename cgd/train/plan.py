"""A training run's plan: rows, epochs, steps and tokens per step, known before its first step.

Kept free of torch so the CLI can print a plan it reads from the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cgd.train.config import TrainConfig
    from cgd.train.data import StepLoader


def training_plan(
    loader: StepLoader, config: TrainConfig, *, train_rows: int, val_rows: int
) -> dict[str, Any]:
    """What the run will do, known before its first step.

    ``max_steps`` overrides ``epochs`` (transformers' rule): the run then takes as many passes
    as those steps need, and ``epochs`` says how many that is (the last one maybe partial).
    ``tokens_per_step`` is the mean number of tokens (prompt + target) a step trains on over
    the first epoch.
    """
    per_epoch = loader.steps_in_epoch(0)
    if config.max_steps:
        total_steps = config.max_steps
        epochs = loader.locate(total_steps - 1)[0] + 1
    else:
        total_steps = loader.total_steps(config.epochs)
        epochs = config.epochs
    return {
        "train_rows": train_rows,
        "val_rows": val_rows,
        "epochs": epochs,
        "epochs_requested": config.epochs,
        "max_steps": config.max_steps,
        "steps_per_epoch": per_epoch,
        "total_steps": total_steps,
        "tokens_per_step": round(sum(int(n) for n in loader.lengths) / per_epoch),
    }


def plan_line(plan: dict[str, Any]) -> str:
    """The plan in one line (cgd-train's log and ``cgd runs watch``). Only the five fields the
    API requires are relied on: a plan read back from it may lack the others."""
    per_epoch = plan.get("steps_per_epoch")
    line = (
        f"plan: {plan['train_rows']} training rows, {plan['val_rows']} validation rows, "
        f"{plan['epochs']} epoch(s), {plan['total_steps']} steps"
        + (f" ({per_epoch} per epoch)" if per_epoch else "")
        + f", ~{plan['tokens_per_step']} tokens per step"
    )
    requested = plan.get("epochs_requested")
    if plan.get("max_steps") and requested is not None and plan["epochs"] != requested:
        line += f"; max_steps {plan['max_steps']} overrides epochs {requested}"
    return line
