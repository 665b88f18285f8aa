"""TensorBoard event files of a run: ``<output_dir>/tensorboard/events.out.tfevents.*``.

Scalars per logged step (``train/loss``, ``train/lr``, ``train/grad_norm``,
``train/tokens_per_s``) and per evaluation (``eval/<set>/accuracy``, ``eval/uncertainty/*``),
written by rank 0 next to ``metrics.jsonl``. ``tensorboard --logdir OUTPUT_DIR`` shows them.
Without the ``tensorboard`` package (it is in the ``train`` extra) nothing is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STEP_SCALARS = {
    "loss": "train/loss",
    "lr": "train/lr",
    "grad_norm": "train/grad_norm",
    "tokens_per_s": "train/tokens_per_s",
    "supervised_tokens_per_s": "train/supervised_tokens_per_s",
}


class ScalarLog:
    """Opens the writer on first use, so ranks that never log never create a file."""

    def __init__(self, output_dir: Path) -> None:
        self.log_dir = output_dir / "tensorboard"
        self._writer: Any = None
        self._unavailable = False

    def _get(self) -> Any:
        if self._writer is None and not self._unavailable:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: metrics.jsonl still has it all
                logger.info("tensorboard is not installed: no event files")
                self._unavailable = True
                return None
            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    def step(self, metrics: dict[str, Any]) -> None:
        writer = self._get()
        if writer is None:
            return
        for key, tag in STEP_SCALARS.items():
            if isinstance(metrics.get(key), int | float):
                writer.add_scalar(tag, metrics[key], metrics["step"])
        writer.flush()  # a live `tensorboard` (or `cgd runs plot`) sees each step at once

    def eval(self, results: dict[str, Any], step: int) -> None:
        writer = self._get()
        if writer is None:
            return
        for name, acc in (results.get("accuracy") or {}).items():
            value = acc.get("accuracy") if isinstance(acc, dict) else acc
            if isinstance(value, int | float):
                writer.add_scalar(f"eval/{name}/accuracy", value, step)
        for key, value in (results.get("uncertainty") or {}).items():
            if isinstance(value, int | float):
                writer.add_scalar(f"eval/uncertainty/{key}", value, step)
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
