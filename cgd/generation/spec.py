"""The job specification: validated once at submission, stored with the job, never trusted twice."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from cgd.enums import Priority, Truncation, Verifier
from cgd.errors import InvalidRequest
from cgd.generation.endpoints import check_endpoint
from cgd.llm.endpoint import EndpointConfig, safe_url
from cgd.secrets import fingerprint, seal_spec
from cgd.security.bounds import INT64_MAX, MAX_COMPLETION_TOKENS, RequestModel, raise_at
from cgd.security.urls import url_allowed

__all__ = ["JobSpec", "check_spec", "url_allowed"]


class JobSpec(RequestModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: uuid.UUID
    student: EndpointConfig | None = Field(
        ..., description="The student endpoint (probe), or null to use the dataset's responses"
    )
    teacher: EndpointConfig = Field(..., description="The teacher endpoint (critique, refine)")
    verifier: Verifier = Verifier.math
    samples_per_prompt: int = Field(1, ge=1, le=64, description="Initial answers per prompt")
    template: str = Field(
        "cgd",
        max_length=60,
        description="Prompt template: a built-in (`cgd`: the paper's instructions; "
        "`cgd-standalone`: the former default; `cgd-detailed`) or a team template's name; "
        "`name@N` pins version N, else the latest version is pinned at creation",
    )
    teacher_solution: bool = Field(
        False,
        description="Also ask the teacher to answer each question directly (its own template "
        "part, `solve`): the target of mode `distill`",
    )
    truncation: Truncation = Field(
        Truncation.retry_larger,
        description="On finish_reason=length: retry once with twice max_tokens (default), or fail",
    )
    chunk_size: int = Field(256, ge=1, le=10_000, description="Dataset items per worker task")
    priority: Priority = Field(
        Priority.normal, description="Order among the team's own jobs (teams share fairly)"
    )
    preflight: bool = Field(
        True, description="Check each endpoint answers GET /models with the model before accepting"
    )

    @model_validator(mode="after")
    def _endpoint_bounds(self) -> JobSpec:
        # EndpointConfig (cgd.llm.endpoint) bounds only the signs; a job's budget and seed must
        # also survive the worker's arithmetic: twice max_tokens on a truncation retry, and
        # seed + sample for each of the samples.
        found = []
        for role in ("student", "teacher"):
            cfg: EndpointConfig | None = getattr(self, role)
            if cfg is None:
                continue
            if cfg.max_tokens > MAX_COMPLETION_TOKENS:
                found.append(
                    ((role, "max_tokens"), f"at most {MAX_COMPLETION_TOKENS}", cfg.max_tokens)
                )
            if cfg.seed is not None and not 0 <= cfg.seed <= INT64_MAX - self.samples_per_prompt:
                found.append(((role, "seed"), "must be 0 to 2**63 - 1 - samples", cfg.seed))
        raise_at("JobSpec", found)
        return self

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
    if spec.student is not None and spec.samples_per_prompt > 1 and spec.student.temperature == 0:
        # Greedy decoding is the default: k greedy samples would be k identical (billed) answers.
        raise InvalidRequest(
            {
                "field": "student.temperature",
                "reason": "samples_per_prompt > 1 needs a student temperature > 0; greedy "
                "decoding (temperature 0, the default) gives identical samples",
            }
        )
    for role in ("student", "teacher"):
        cfg: EndpointConfig | None = getattr(spec, role)
        if cfg is None:
            continue
        check_endpoint(cfg, role, allowlist)
