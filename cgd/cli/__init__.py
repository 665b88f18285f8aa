"""The team side of the ``cgd`` command line: datasets, generation jobs, snapshots and training
runs over the REST API (built on :mod:`cgd.client`): one module per group (``datasets``,
``jobs``, ``snapshots``, ``runs``), the helpers they share in ``common``. Mounted on the ``cgd``
app by :func:`mount`::

    cgd datasets push FILE [--name --prompt-field --reference-field --response-field --id-field]
    cgd datasets ls | show ID | items ID | rm ID
    cgd jobs create --dataset ID --teacher-url URL --teacher-model M
                    [--student-url URL --student-model M | --no-student] [--spec job.yaml] …
    cgd jobs watch ID | show ID | ls | cancel ID | retry-failed ID | triplets ID
    cgd snapshots create --job ID [--job ID] [--spec curation.yaml] [--name N]
    cgd snapshots export ID -o FILE [--format jsonl|parquet --layout … --mode … --split …]
    cgd snapshots show ID | card ID | ls | rm ID
    cgd runs create --snapshot ID --base-model M [--mode --method --lr --max-steps …]
    cgd runs watch ID | show ID | ls | events ID | cancel ID
    cgd experiments create --snapshot ID --base-model M [--mode M …] [--seed N …] [--spec e.yaml]
    cgd experiments watch ID | report ID [--format md|json|svg] | show ID | ls | cancel ID

Connection: ``--api-url``/``--api-key`` after the group name (``cgd jobs --api-url URL ls``) or
the environment, ``CGD_API_URL`` (default ``http://127.0.0.1:8000``) and ``CGD_API_KEY``.

Output: results on stdout, progress bars and messages on stderr. ``create``/``push`` print the
new id as the last stdout line (``ID=$(cgd datasets push f.jsonl | tail -1)``); ``ls``/``show``
take ``--json`` for machine-readable output.

Exit codes:

* 0 — success (``watch``: the job/run completed)
* 1 — the job, run or snapshot ended ``failed`` or ``cancelled``
* 2 — usage error (bad options, unreadable spec file)
* 3 — the API refused the request (4xx: 401 bad key, 404 unknown id, 409, 413, 422 invalid)
* 4 — the API is unreachable or answered 5xx
* 130 — interrupted (Ctrl-C); a watched job or run keeps going
"""

from __future__ import annotations

import typer

from cgd.cli import datasets, experiments, jobs, runs, snapshots
from cgd.cli.common import (
    EXIT_API_ERROR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "mount",
]


def mount(app: typer.Typer) -> None:
    """Adds the ``datasets``, ``jobs``, ``snapshots``, ``runs`` and ``experiments`` groups."""
    for name, module in (
        ("datasets", datasets),
        ("jobs", jobs),
        ("snapshots", snapshots),
        ("runs", runs),
        ("experiments", experiments),
    ):
        app.add_typer(module.app, name=name)
