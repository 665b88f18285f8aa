"""A run's plan as the trainer posts it: checked field by field, printed first by the CLI."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cgd.cli.runs import _event_line
from cgd.runs.schemas import EventIn

PLAN = {
    "train_rows": 64,
    "val_rows": 0,
    "epochs": 2,
    "epochs_requested": 1,
    "max_steps": 15,
    "steps_per_epoch": 8,
    "total_steps": 15,
    "tokens_per_step": 1234,
}


def test_a_bad_plan_is_refused_naming_the_field() -> None:
    assert EventIn(type="data", data={"plan": PLAN}).data["plan"] == PLAN
    with pytest.raises(ValidationError, match=r"data\.plan\.train_rows"):
        EventIn(type="data", data={"plan": {**PLAN, "train_rows": "all"}})
    with pytest.raises(ValidationError, match=r"data\.plan\.total_steps"):
        EventIn(type="data", data={"plan": {k: v for k, v in PLAN.items() if k != "total_steps"}})


def test_watch_prints_the_plan_with_the_epochs_max_steps_makes() -> None:
    line = _event_line({"type": "data", "data": {"plan": PLAN, "rows": 64}}, None)
    first, second = line.split("\n")
    assert first == (
        "plan: 64 training rows, 0 validation rows, 2 epoch(s), 15 steps (8 per epoch), "
        "~1234 tokens per step; max_steps 15 overrides epochs 1"
    )
    assert second.strip() == "data  rows 64"
    plain = _event_line({"type": "data", "data": {"plan": {**PLAN, "max_steps": None}}}, None)
    assert "overrides" not in plain
    # A plan with only the fields the API requires (an older trainer's) prints too.
    required = {k: PLAN[k] for k in ("train_rows", "val_rows", "epochs", "total_steps")}
    line = _event_line({"type": "data", "data": {"plan": {**required, "tokens_per_step": 9}}}, 2)
    assert line.split("\n")[0] == (
        "plan: 64 training rows, 0 validation rows, 2 epoch(s), 15 steps, ~9 tokens per step"
    )
