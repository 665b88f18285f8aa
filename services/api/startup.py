"""Checks the API makes before it serves anything: settings that would leave the deployment
open (a ``*`` allow-list) are logged; ones that would lose data (stored keys without the secret
to read them) stop it. Spool files a crashed API left behind are removed."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from cgd.security.urls import allows_everything
from cgd.settings import Settings

log = logging.getLogger("cgd.api")
SPOOL_PREFIX = "cgd-upload-"


def check_startup(settings: Settings, sessionmaker: Any) -> None:
    if allows_everything(settings.endpoint_allowlist):
        log.warning(
            "CGD_ENDPOINT_ALLOWLIST is *: jobs may make the worker call any URL, internal "
            "services included; list the LLM endpoints instead (docs/security.md)"
        )
    elif not settings.endpoint_allowlist.strip():
        log.warning("CGD_ENDPOINT_ALLOWLIST is empty: every job will be refused (422)")
    from cgd.runs.base_models import registry

    registry(settings)  # a malformed CGD_BASE_MODELS stops the API here, not at a run's request
    from cgd.secrets import check_secret_configured

    check_secret_configured(settings, sessionmaker)
    removed = remove_stale_spool(settings.upload_tmp_dir)
    if removed:
        log.warning("removed %d upload spool file(s) left by an earlier API process", removed)


def spool_prefix() -> str:
    """Spool files carry the writing process's pid, so a restarted API can tell its dead
    predecessor's files from a live neighbour's (several API processes may share the folder)."""
    return f"{SPOOL_PREFIX}{os.getpid()}-"


def remove_stale_spool(tmp_dir: Path | None) -> int:
    """Delete upload spool files whose writing process is gone."""
    folder = tmp_dir or Path(tempfile.gettempdir())
    removed = 0
    for path in folder.glob(f"{SPOOL_PREFIX}*"):
        pid = path.name[len(SPOOL_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        try:
            path.unlink()
            removed += 1
        except OSError:
            continue  # gone meanwhile, or not ours to delete
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
