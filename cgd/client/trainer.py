"""The trainer's side of the API (``/v1/training-runs/...`` with one run's token, not a team
key): claim the run to start, read its spec, download its data and eval sets, post its events.
The trainer (``services/worker/trainer.py``) reports through this, on the same transport as
every other caller of the API."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from cgd.client.base import BaseClient
from cgd.client.transfer import ExportResult, download
from cgd.runs.schemas import EventAck, RunClaim, TrainerRunOut

__all__ = ["TrainerClient"]

Id = str | uuid.UUID


class TrainerClient(BaseClient):
    """``api_key`` is the run token the training message carries."""

    def claim(self) -> uuid.UUID | None:
        """The run this token starts (the fair order across teams); None: nothing to start."""
        return self._request(RunClaim, "POST", "/v1/training-runs/claim").run_id

    def spec(self, run_id: Id) -> TrainerRunOut:
        return self._request(TrainerRunOut, "GET", f"/v1/training-runs/{run_id}/spec")

    def post_event(self, run_id: Id, kind: str, data: dict[str, Any]) -> EventAck:
        """One event (``status``, ``step``, ``eval``, ``artifact``, ``log``); the answer says
        whether the team asked the run to stop."""
        body = {"type": kind, "data": data}
        return self._request(EventAck, "POST", f"/v1/training-runs/{run_id}/events", json=body)

    def download_data(
        self, run_id: Id, path: str | os.PathLike[str], split: str = "train"
    ) -> ExportResult:
        """The run's snapshot rows (native JSONL) to ``path``, through ``path.part``."""
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        url = f"/v1/training-runs/{run_id}/data"
        return download(self, url, {"split": split}, dest, None)

    def eval_set(self, run_id: Id, dataset_id: Id, path: str | os.PathLike[str]) -> Path:
        """A team dataset the run evaluates on, as JSONL rows ``{id, problem, answer}``."""
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        url = f"/v1/training-runs/{run_id}/eval-sets/{dataset_id}"
        download(self, url, {}, dest, None)
        return dest
