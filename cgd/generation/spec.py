"""The job specification: validated once at submission, stored with the job, never trusted twice."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from cgd.enums import Priority, Truncation, Verifier
from cgd.errors import InvalidRequest
from cgd.llm_client import EndpointConfig
from cgd.templates import TEMPLATES


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: uuid.UUID
    student: EndpointConfig | None = Field(
        ..., description="The student endpoint (probe), or null to use the dataset's responses"
    )
    teacher: EndpointConfig = Field(..., description="The teacher endpoint (critique, refine)")
    verifier: Verifier = Verifier.math
    samples_per_prompt: int = Field(1, ge=1, le=64, description="Initial answers per prompt")
    template: str = Field("cgd", description="Prompt template name")
    truncation: Truncation = Field(
        Truncation.fail, description="On finish_reason=length: fail the item, or retry once larger"
    )
    chunk_size: int = Field(256, ge=1, le=10_000, description="Dataset items per worker task")
    priority: Priority = Field(
        Priority.normal, description="Order among the team's own jobs (teams share fairly)"
    )
    preflight: bool = Field(
        True, description="Check each endpoint answers GET /models with the model before accepting"
    )

    def public(self) -> dict[str, Any]:
        """The spec as shown to users: API keys masked."""
        out = self.model_dump(mode="json")
        for role in ("student", "teacher"):
            if out.get(role) and out[role].get("api_key"):
                out[role]["api_key"] = "***"
        return out

    def stored(self) -> dict[str, Any]:
        """The spec as stored (the worker needs the keys to call the endpoints)."""
        out = self.model_dump(mode="json")
        for role, cfg in (("student", self.student), ("teacher", self.teacher)):
            if cfg is not None and cfg.api_key is not None:
                out[role]["api_key"] = cfg.api_key.get_secret_value()
        return out


def check_spec(spec: JobSpec, allowlist: str) -> None:
    if spec.template not in TEMPLATES:
        raise InvalidRequest(
            {"field": "template", "reason": f"unknown template; known: {sorted(TEMPLATES)}"}
        )
    for role in ("student", "teacher"):
        cfg: EndpointConfig | None = getattr(spec, role)
        if cfg is None:
            continue
        if not cfg.base_url.startswith(("http://", "https://")):
            raise InvalidRequest({"field": f"{role}.base_url", "reason": "must be http(s)"})
        if not url_allowed(cfg.base_url, allowlist):
            raise InvalidRequest(
                {"field": f"{role}.base_url", "reason": "endpoint is not in the allow-list"}
            )


def url_allowed(url: str, allowlist: str) -> bool:
    """Whether ``url`` is under one of the allow-list's entries (``*`` allows everything).

    Compared after parsing, scheme, host and port exactly and the path as a prefix, so that
    ``http://teacher:8000@evil/v1`` or ``http://teacher:8000.evil/v1`` never pass for
    ``http://teacher:8000``.
    """
    entries = [p.strip() for p in allowlist.split(",") if p.strip()]
    if "*" in entries:
        return True
    target = _parts(url)
    if target is None:
        return False
    for entry in entries:
        allowed = _parts(entry)
        if allowed is None or allowed[:3] != target[:3]:
            continue
        prefix = allowed[3].rstrip("/")
        if target[3] == prefix or target[3].startswith(prefix + "/"):
            return True
    return False


def _parts(url: str) -> tuple[str, str, int, str] | None:
    try:
        u = urlsplit(url)
        port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    except ValueError:
        return None
    if u.scheme not in ("http", "https") or not u.hostname or u.username or u.password:
        return None
    return u.scheme, u.hostname.lower(), int(port or 0), u.path.rstrip("/")
