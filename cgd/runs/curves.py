"""A run's curves from its events: loss, learning rate and eval accuracy per step.

``series`` reads the events the trainer posts (``step``: ``{step, loss, lr, ...}``; ``eval``:
``{step, accuracy: {set: value}}``); ``plot`` draws them with matplotlib (``cgd runs plot``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

Point = tuple[int, float]


def series(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"loss": [(step, v)], "lr": [...], "eval": {set: [(step, accuracy)]}}``, by step."""
    loss: dict[int, float] = {}
    lr: dict[int, float] = {}
    evals: dict[str, dict[int, float]] = {}
    for e in events:
        data = e.get("data") or {}
        step = data.get("step")
        if not isinstance(step, int):
            continue
        if e.get("type") == "step":
            if isinstance(data.get("loss"), int | float):
                loss[step] = float(data["loss"])
            if isinstance(data.get("lr"), int | float):
                lr[step] = float(data["lr"])
        elif e.get("type") == "eval":
            for name, value in (data.get("accuracy") or {}).items():
                if isinstance(value, int | float):
                    evals.setdefault(name, {})[step] = float(value)
    return {
        "loss": sorted(loss.items()),
        "lr": sorted(lr.items()),
        "eval": {name: sorted(points.items()) for name, points in sorted(evals.items())},
    }


def plot(curves: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Loss, learning rate and eval accuracy against step, one panel each, to ``path`` (the
    extension picks the format: .png, .svg, .pdf)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    panels = [("loss", curves["loss"]), ("learning rate", curves["lr"])]
    for ax, (label, points) in zip(axes, panels, strict=False):
        if points:
            ax.plot(*zip(*points, strict=True), marker="." if len(points) < 50 else None)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax = axes[2]
    for name, points in curves["eval"].items():
        ax.plot(*zip(*points, strict=True), marker="o", label=name)
    if curves["eval"]:
        ax.legend()
    ax.set_ylabel("eval accuracy")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
