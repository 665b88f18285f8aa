"""The trainer side of a training run: download the snapshot over the API, train with
``cgd.train``, and report every step, evaluation and artifact back with the run's token."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from cgd.client.errors import CgdApiError, Unauthorized
from cgd.client.trainer import TrainerClient
from cgd.runs.ops import DATASET_PREFIX
from cgd.settings import Settings

log = logging.getLogger("cgd.trainer")


class RunReporter:
    """Posts events for one run; remembers whether the API asked the run to stop. It speaks to
    the API through :class:`cgd.client.trainer.TrainerClient` (the run token as its key)."""

    def __init__(self, api_url: str, run_id: str, token: str, heartbeat_s: float) -> None:
        self.run_id = run_id
        self.heartbeat_s = heartbeat_s
        # Events get the reporter's own tries below (the client would not repeat a POST
        # whose answer was lost); reads get the client's retries.
        self.api = TrainerClient(api_url, token, timeout=60, transfer_timeout=600)
        self.cancelled = threading.Event()
        self._stop = threading.Event()

    def claim(self) -> bool:
        """Ask which run this message starts (round-robin by team); the token follows it."""
        try:
            claimed = self.api.claim()
        except Unauthorized:  # the message's run ended (cancelled while queued, say)
            return False
        if claimed is None:
            return False
        self.run_id = str(claimed)
        return True

    def spec(self) -> dict[str, Any]:
        try:
            return self.api.spec(self.run_id).model_dump(mode="json")
        except Unauthorized:  # token expired: the run ended (cancelled while queued, say)
            return {"status": "ended", "cancel_requested": True}

    def post(self, kind: str, data: dict[str, Any]) -> None:
        for attempt in range(5):  # the API may be restarting: a few tries, then carry on
            try:
                ack = self.api.post_event(self.run_id, kind, data)
            except Unauthorized:  # the run is over (token expired): stop reporting
                self.cancelled.set()
                return
            except CgdApiError as exc:
                log.warning("event %s not delivered (try %d): %s", kind, attempt + 1, exc)
                self._stop.wait(min(2**attempt, 10))
                continue
            if ack.cancel:
                self.cancelled.set()
            return

    def download(self, path: Path, split: str = "train") -> int:
        return self.api.download_data(self.run_id, path, split)["bytes"]

    def eval_set(self, dataset_id: str, path: Path) -> Path:
        return self.api.eval_set(self.run_id, dataset_id, path)

    def heartbeat_forever(self) -> None:
        """Long evaluations send no events; this keeps the run alive and hears cancels."""
        while not self._stop.wait(self.heartbeat_s):
            self.post("log", {"heartbeat": True})

    def close(self) -> None:
        self._stop.set()
        self.api.close()


def local_eval_sets(reporter: RunReporter, sets: list[str], workdir: Path) -> list[str]:
    """Bundled sets stay; ``dataset:<id>`` sources are downloaded as JSONL files (their options
    — field mapping, verifier kind, k — kept, and results named after the dataset)."""
    from cgd.curation.eval_sets import parse_eval_set

    out = []
    for spec in sets:
        source = parse_eval_set(spec).source
        if source.startswith(DATASET_PREFIX):
            dataset_id = source.removeprefix(DATASET_PREFIX)
            path = reporter.eval_set(dataset_id, workdir / "eval" / f"dataset-{dataset_id}.jsonl")
            spec = str(path) + spec[len(source) :]
        out.append(spec)
    return out


def eval_sizes(sets: list[str], limit: int | None) -> dict[str, int]:
    """How many problems each eval set is scored on, by the name its results carry."""
    from cgd.curation.eval_sets import set_name
    from cgd.train.evaluate import load_eval_rows

    return {set_name(s): len(load_eval_rows(s, limit)) for s in sets}


def train_config(
    spec: dict[str, Any],
    data: Path,
    out: Path,
    eval_sets: list[str],
    select_on: str | None = None,
    validation: Path | None = None,
) -> Any:
    from cgd.train.config import TrainConfig

    hp, ev = spec["spec"]["hyperparams"], spec["spec"]["eval"]
    return TrainConfig(
        model_path=spec["base_model_location"],  # resolved by the API, never the request's
        train_file=str(data),
        layout="native",
        mode=spec["spec"]["mode"],
        method=spec["spec"]["method"],
        lora_r=hp["lora"]["r"],
        lora_alpha=hp["lora"]["alpha"],
        learning_rate=hp["learning_rate"],
        epochs=hp["epochs"],
        max_steps=hp["max_steps"],
        tokens_per_step=hp["tokens_per_step"],
        max_length=hp["max_length"],
        warmup_ratio=hp["warmup_ratio"],
        # Runs created before these fields existed get the defaults.
        strategy=hp.get("strategy", "ddp"),
        compile=hp.get("compile"),
        micro_batch_rows=hp.get("micro_batch_rows", 1),
        gradient_checkpointing=hp.get("gradient_checkpointing", False),
        eval_sets=eval_sets,
        eval_limit=ev["max_samples"],
        eval_max_new_tokens=ev["max_new_tokens"],
        eval_backend=ev.get("backend", "hf"),  # runs created before the field: hf
        seed=hp.get("seed", 0),
        common_modes=spec["spec"].get("common_modes"),
        select_on=select_on,
        select_every_steps=ev.get("select_every_steps", 0),
        validation_file=str(validation) if validation else None,
        output_dir=str(out),
    )


def run_training_job(run_id: str, token: str, settings: Settings) -> str:
    from cgd.train.launch import NonBlockingEvents, train

    reporter = RunReporter(settings.api_url, run_id, token, settings.trainer_heartbeat_s)
    try:
        # Only a queued run is claimed: a redelivered message (after a broker visibility timeout,
        # say) must not start a second trainer on a run that is already going.
        if not reporter.claim():
            log.info("run %s is no longer waiting; nothing to do", run_id)
            return "skipped"
        run_id = reporter.run_id  # the claimed run (the fair order), maybe not the message's
        spec = reporter.spec()
        threading.Thread(target=reporter.heartbeat_forever, daemon=True).start()
        reporter.post("status", {"status": "running", "phase": "downloading"})
        workdir = settings.trainer_dir / run_id
        data = workdir / "train.jsonl"
        size = reporter.download(data)
        reporter.post("artifact", {"kind": "train_data", "path": str(data), "bytes": size})
        # The snapshot's validation split feeds the refinement-uncertainty metric; without one
        # the metric is skipped (the trainer says why), and no training row is held out.
        validation = workdir / "validation.jsonl"
        has_validation = reporter.download(validation, "validation") > 0
        eval_sets = local_eval_sets(reporter, spec["spec"]["eval"]["sets"], workdir)
        select_on = spec["spec"]["eval"].get("select_on")
        if select_on is not None:  # a dataset:<id> validation set is downloaded like the others
            (select_on,) = local_eval_sets(reporter, [select_on], workdir)
        config = train_config(
            spec, data, workdir / "out", eval_sets, select_on,
            validation=validation if has_validation else None,
        )  # fmt: skip
        sizes = eval_sizes(eval_sets, config.eval_limit)

        def deliver(kind: str, data: dict[str, Any]) -> None:
            if kind == "eval" and "accuracy" in data:
                data = {**data, "n": {name: sizes.get(name) for name in data["accuracy"]}}
            reporter.post(kind, data)

        # Steps only enqueue events (HTTP retries happen in a thread); one process per GPU in
        # CGD_TRAINER_GPUS (torchrun), or this process for one GPU.
        events = NonBlockingEvents(deliver)
        try:
            result = train(
                config,
                on_event=events,
                should_stop=reporter.cancelled.is_set,
                gpus=os.environ.get("CGD_TRAINER_GPUS"),
            )
        finally:
            events.close()
        return str(result.get("state"))
    except Exception as exc:
        log.exception("training run %s failed", run_id)
        reporter.post("status", {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return "failed"
    finally:
        reporter.close()
