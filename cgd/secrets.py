"""Endpoint API keys at rest: sealed with Fernet (AES-128-CBC + HMAC-SHA256) under
``CGD_SECRET_KEY`` before they reach the database, opened only by the worker that calls the
endpoint. A sealed value reads ``cgd-sealed:v1:<token>``.

``CGD_SECRET_KEY`` may list several keys separated by commas: the first seals, all open, so a
key can be rotated by prepending the new one (docs/security.md). Without any key, a job that
carries an ``api_key`` is refused and an API over a database that holds sealed keys won't start.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from cgd.errors import InvalidRequest
from cgd.settings import Settings, get_settings

SEALED_PREFIX = "cgd-sealed:v1:"
SETTING = "CGD_SECRET_KEY"
ROLES = ("student", "teacher")


class SecretUnavailable(RuntimeError):
    """A sealed value can't be opened here (no key, or not the key that sealed it)."""


def generate_key() -> str:
    return Fernet.generate_key().decode()


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])
    except ValueError as exc:
        raise SecretUnavailable(
            f"{SETTING} is not a valid Fernet key (32 url-safe base64 bytes; "
            "`cgd admin gen-secret` makes one)"
        ) from exc


def _keys(settings: Settings | None) -> str | None:
    secret = (settings or get_settings()).secret_key
    value = secret.get_secret_value().strip() if secret is not None else ""
    return value or None


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal(plain: str, settings: Settings | None = None) -> str:
    keys = _keys(settings)
    if keys is None:
        raise InvalidRequest(
            {
                "field": "api_key",
                "reason": f"this deployment can't store endpoint API keys: the operator sets "
                f"{SETTING} (docs/security.md)",
            }
        )
    return SEALED_PREFIX + _fernet(keys).encrypt(plain.encode()).decode()


def unseal(stored: str, settings: Settings | None = None) -> str:
    if not is_sealed(stored):
        return stored  # written before sealing existed; the API seals these at start
    keys = _keys(settings)
    if keys is None:
        raise SecretUnavailable(f"an endpoint API key is sealed but {SETTING} is not set here")
    try:
        return _fernet(keys).decrypt(stored[len(SEALED_PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretUnavailable(f"{SETTING} does not open this endpoint API key") from None


def fingerprint(plain: str, settings: Settings | None = None) -> str:
    """A stable keyed digest (idempotency compares specs without storing keys)."""
    keys = _keys(settings) or ""
    first = keys.split(",")[0].encode()
    return hmac.new(first, plain.encode(), hashlib.sha256).hexdigest()


def seal_spec(spec: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """A stored spec's endpoint keys sealed (a copy; plaintext never reaches the database)."""
    out = dict(spec)
    for role in ROLES:
        cfg = out.get(role)
        key = cfg.get("api_key") if isinstance(cfg, dict) else None
        if isinstance(cfg, dict) and isinstance(key, str) and not is_sealed(key):
            out[role] = {**cfg, "api_key": seal(key, settings)}
    return out


def open_spec(spec: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The stored spec with its keys opened, for the worker's calls only."""
    out = dict(spec)
    for role in ROLES:
        cfg = out.get(role)
        if isinstance(cfg, dict) and isinstance(cfg.get("api_key"), str):
            out[role] = {**cfg, "api_key": unseal(cfg["api_key"], settings)}
    return out


def check_secret_configured(settings: Settings, sessionmaker: Any) -> None:
    """At API start: seal keys stored in plain text by an older version; refuse to start when
    keys are stored and no secret is set (jobs could never run, and new keys couldn't be
    stored safely)."""
    from sqlalchemy import Text, cast, select, update

    from cgd.db.models import Job

    with sessionmaker() as session:
        rows = session.execute(
            select(Job.id, Job.spec).where(cast(Job.spec, Text).like('%"api_key": "%'))
        ).all()
        if not rows:
            return
        if _keys(settings) is None:
            raise SystemExit(
                f"{len(rows)} job(s) store endpoint API keys but {SETTING} is not set; set it "
                "(the key that sealed them) and start again. See docs/security.md."
            )
        for job_id, spec in rows:
            sealed = seal_spec(spec, settings)
            if sealed != spec:
                session.execute(update(Job).where(Job.id == job_id).values(spec=sealed))
        session.commit()
