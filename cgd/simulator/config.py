"""The simulator's settings (:class:`SimConfig`) and the constants its clients rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Stage = Literal["probe", "critique", "refine", "solve", "other"]
DEFAULT_MODEL = "sim-model"
READY_PREFIX = "simulator listening on "

# Settings that shape the running server; they cannot change through POST /sim/config.
STARTUP_ONLY = frozenset({"host", "port", "slots", "datasets", "record_last"})


class SimConfig(BaseModel):
    """Everything the simulator does; the fault and answer fields can change at runtime."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    slots: int = Field(64, ge=1, description="Requests generated at once (K)")
    latency_s: float = Field(0.5, ge=0, description="Seconds each request holds a slot (L)")
    latency_jitter: float = Field(
        0.0, ge=0, le=1, description="Each latency is L*(1±jitter), uniform: the mean stays L"
    )
    datasets: list[Path] = Field(default_factory=list, description="JSONL files with references")
    served_models: list[str] = Field(
        default_factory=list, description="Model names accepted; empty accepts any (404 otherwise)"
    )
    accuracy: float = Field(0.5, ge=0, le=1, description="Probability a probe answer is right")
    no_verdict_rate: float = Field(0.0, ge=0, le=1, description="Critiques without a verdict")
    seed: int = Field(0, description="Seed of the fault RNG")
    rate_429: float = Field(0.0, ge=0, le=1)
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After sent with each 429")
    rate_500: float = Field(0.0, ge=0, le=1)
    rate_hang: float = Field(0.0, ge=0, le=1, description="Requests that never answer")
    hang_s: float = Field(3600.0, ge=0, description="How long a hung request sleeps")
    rate_truncate: float = Field(0.0, ge=0, le=1, description="finish_reason=length, cut text")
    rate_drop: float = Field(0.0, ge=0, le=1, description="Connection closed, no response")
    poison: list[str] = Field(
        default_factory=list, description="Content substrings that always get a 500"
    )
    fault_stages: list[Stage] = Field(
        default_factory=list, description="Random faults only for these stages; empty = all"
    )
    fault_models: list[str] = Field(
        default_factory=list, description="Random faults only for these models; empty = all"
    )
    api_key: SecretStr | None = Field(None, description="If set, require this bearer token")
    serve_metrics: bool = Field(True, description="Serve vLLM-like Prometheus gauges at /metrics")
    max_waiting: int | None = Field(
        None, ge=0, description="Answer 429 once more than this many requests wait (bounded queue)"
    )
    rpm: int | None = Field(
        None, ge=1, description="Requests per rate window; x-ratelimit-* headers, 429 past it"
    )
    rate_window_s: float = Field(60.0, gt=0, description="The rpm window (60 s, as hosted APIs)")
    reject_params: list[str] = Field(
        default_factory=list, description="Request keys answered with 400 (hosted-API quirks)"
    )
    batch_delay_s: float = Field(1.0, ge=0, description="How long a Batch API batch takes")
    reasoning: bool = Field(
        False, description="Answers carry reasoning_content apart from the final answer"
    )
    record_last: int = Field(100, ge=0, description="Sampling parameters kept for /sim/stats")

    @model_validator(mode="after")
    def _rates_fit(self) -> SimConfig:
        total = self.rate_429 + self.rate_500 + self.rate_hang + self.rate_truncate + self.rate_drop
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:.3f} > 1")
        return self

    def public(self) -> dict[str, Any]:
        """JSON-able view for /sim/config; the API key is masked by SecretStr."""
        return self.model_dump(mode="json")
