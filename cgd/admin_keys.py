"""Operator views of team API keys: list them (never a secret: only hashes are stored) and
revoke one. A revoked key is refused by the database check at once and by every API process
within ``CGD_KEY_CACHE_TTL_S`` (the verified-key cache)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cgd.db.models import ApiKey, Team, utcnow


@dataclass(frozen=True)
class KeyRow:
    key_id: str
    team: str
    name: str | None
    created: str
    revoked: str | None


def list_keys(session: Session, team: str | None = None) -> list[KeyRow]:
    q = select(ApiKey, Team.name).join(Team, Team.id == ApiKey.team_id)
    if team is not None:
        q = q.where(Team.name == team)
    return [
        KeyRow(
            key.key_id,
            team_name,
            key.name,
            key.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            key.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if key.revoked_at else None,
        )
        for key, team_name in session.execute(q.order_by(Team.name, ApiKey.created_at))
    ]


def revoke_key(session: Session, key_id: str) -> bool:
    """Revoke the active key ``key_id`` (the middle part of ``cgd_<key id>_<secret>``)."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
