"""The task contract between the API and the workers: task names, queues and message builders.

No Celery import here: the API builds messages with these functions and hands them to the Celery
app it creates in its lifespan; the worker registers its tasks under the same names. Messages
carry ids only (never payloads), and are sent only after the rows they name are committed.
"""

from __future__ import annotations

GENERATION_QUEUE = "generation"
CURATION_QUEUE = "curation"
TRAIN_QUEUE = "train"
QUEUES = (GENERATION_QUEUE, CURATION_QUEUE, TRAIN_QUEUE)

# A token for "run the next chunk": the worker picks which one, in fair order
# (cgd.generation.dispatch). Arguments, if any (messages of older versions), are ignored.
RUN_CHUNK = "cgd.generation.run_chunk"
BUILD_SNAPSHOT = "cgd.curation.build_snapshot"
TRAIN_RUN = "cgd.train.run"
PING = "cgd.ops.ping"

# Task-name prefix → queue, for Celery's router.
ROUTES = {
    "cgd.generation.*": {"queue": GENERATION_QUEUE},
    "cgd.curation.*": {"queue": CURATION_QUEUE},
    "cgd.train.*": {"queue": TRAIN_QUEUE},
}

# (task name, args, queue) or, for a credential, (…, headers): Celery logs a task's args in its
# "received" line, never its message headers.
Message = tuple[str, list[object], str] | tuple[str, list[object], str, dict[str, str]]
RUN_TOKEN_HEADER = "cgd_run_token"
ChunkRef = tuple[str, int]  # (job id, chunk number)


def run_tokens(n: int) -> list[Message]:
    return [(RUN_CHUNK, [], GENERATION_QUEUE) for _ in range(max(0, n))]


def build_snapshot_message(snapshot_id: str) -> Message:
    args: list[object] = [snapshot_id]
    return (BUILD_SNAPSHOT, args, CURATION_QUEUE)


def train_run_message(run_id: str, token: str) -> Message:
    """The run token is the trainer's only credential for this run: it travels in a message
    header, so no log line (Celery's included) ever shows it."""
    args: list[object] = [run_id]
    return (TRAIN_RUN, args, TRAIN_QUEUE, {RUN_TOKEN_HEADER: token})
