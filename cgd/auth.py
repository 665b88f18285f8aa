"""API keys: ``cgd_<key id>_<secret>``. Only a SHA-256 of the secret is stored.

The secret is 256 random bits, so a fast hash is enough (no password stretching needed); the
public key id finds the row and the hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from cgd.db.models import ApiKey, Team
from cgd.errors import Unauthorized
from cgd.ttl_cache import TTLCache

PREFIX = "cgd"
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, team_name: str, key_name: str | None = None) -> tuple[Team, str]:
    """Create the team if needed and a new key for it; returns the key, shown only this once."""
    team = session.scalar(select(Team).where(Team.name == team_name))
    if team is None:
        team = Team(name=team_name)
        session.add(team)
        session.flush()
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    session.add(ApiKey(team_id=team.id, key_id=key_id, secret_hash=_hash(secret), name=key_name))
    session.flush()
    return team, f"{PREFIX}_{key_id}_{secret}"


# Recently verified keys (key id → team id, secret hash) for a few seconds, so polling clients
# don't cost a database round trip per request. A deleted key stops working within the TTL.
KeyCache = TTLCache[str, tuple[uuid.UUID, str]]


def _parse(authorization: str | None) -> tuple[str, str, str]:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    prefix, _, rest = token.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    return prefix, key_id, secret


def team_from_cache(cache: KeyCache, authorization: str | None) -> uuid.UUID | None:
    """The team of a key verified moments ago, or None (then call :func:`authenticate`)."""
    prefix, key_id, secret = _parse(authorization)
    found = cache.get(key_id) if prefix == PREFIX and key_id and secret else None
    if found is None or not hmac.compare_digest(found[1], _hash(secret)):
        return None
    return found[0]


def authenticate(
    session: Session, authorization: str | None, cache: KeyCache | None = None
) -> uuid.UUID:
    """The team id for an ``Authorization: Bearer <key>`` header, or Unauthorized."""
    prefix, key_id, secret = _parse(authorization)
    found: tuple[uuid.UUID, str] | None = None
    if prefix == PREFIX and key_id and secret:
        found = cache.get(key_id) if cache is not None else None
        if found is None:
            row = session.scalar(
                select(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
            )
            if row is not None:
                found = (row.team_id, row.secret_hash)
    # Compare even when no row matched, so timing doesn't tell which key ids exist.
    ok = hmac.compare_digest(found[1] if found else _DUMMY_HASH, _hash(secret))
    if found is None or not ok:
        raise Unauthorized("invalid API key")
    if cache is not None:
        cache.put(key_id, found)
    return found[0]
