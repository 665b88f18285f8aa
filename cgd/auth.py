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


def authenticate(session: Session, authorization: str | None) -> uuid.UUID:
    """The team id for an ``Authorization: Bearer <key>`` header, or Unauthorized."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    prefix, _, rest = token.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    row = None
    if prefix == PREFIX and key_id and secret:
        row = session.scalar(
            select(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
        )
    # Compare even when no row matched, so timing doesn't tell which key ids exist.
    ok = hmac.compare_digest(row.secret_hash if row else _DUMMY_HASH, _hash(secret))
    if row is None or not ok:
        raise Unauthorized("invalid API key")
    return row.team_id
