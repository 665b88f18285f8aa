"""The job specification: validated once at submission, stored with the job, never trusted twice."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cgd.enums import Truncation, Verifier
from cgd.errors import InvalidRequest
from cgd.generation.endpoints import check_endpoint
from cgd.llm_client import EndpointConfig, safe_url
from cgd.secrets import fingerprint, seal_spec
from cgd.security.urls import url_allowed
from cgd.templates import TEMPLATES

__all__ = ["JobSpec", "check_spec", "url_allowed"]


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

    def public(self) -> dict[str, Any]:
        """The spec as shown to users, written to lineage and cards: API keys masked, user info
        removed from URLs (older jobs may have one)."""
        out = self.model_dump(mode="json")
        for role in ("student", "teacher"):
            if out.get(role):
                out[role]["base_url"] = safe_url(out[role]["base_url"])
                if out[role].get("api_key"):
                    out[role]["api_key"] = "***"
        return out

    def stored(self) -> dict[str, Any]:
        """The spec as stored: API keys sealed (cgd.secrets); the worker opens them."""
        return seal_spec(self._with_keys())

    def fingerprint(self) -> dict[str, Any]:
        """The spec with keys replaced by keyed digests: equal specs compare equal."""
        out = self._with_keys()
        for role in ("student", "teacher"):
            if out.get(role) and out[role].get("api_key"):
                out[role]["api_key"] = fingerprint(out[role]["api_key"])
        return out

    def _with_keys(self) -> dict[str, Any]:
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
        check_endpoint(cfg, role, allowlist)
