"""What an endpoint is, on the wire: the request types every layer shares.

Kept apart from the client (:mod:`cgd.llm_client`) so that request schemas (a job's spec) and
the typed API client import pydantic only, never aiohttp.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from yarl import URL

__all__ = ["EndpointConfig", "RateLimit", "safe_url"]

# Request keys the client owns; `extra` must not override them.
_RESERVED = frozenset({"messages", "model", "n", "stream"})


class RateLimit(BaseModel):
    """A hosted endpoint's published limits (per API key, shared by all worker processes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpm: int | None = Field(None, ge=1, description="Requests per minute")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (prompt + max tokens)")


class EndpointConfig(BaseModel):
    """One model on one OpenAI-compatible server, with every sampling parameter explicit.

    ``base_url`` follows the OpenAI convention and includes the version prefix
    (``http://host:8000/v1``). ``extra`` carries server-specific parameters (``top_k``,
    ``min_p``, ``repetition_penalty`` …) and is sent as-is.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    model: str
    api_key: SecretStr | None = None
    # Greedy with a long budget by default, as the reference release decodes (a 2048-token cap
    # silently dropped long problems). Sampling is opt-in.
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(8192, ge=1)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: list[str] | None = None
    n: Literal[1] = 1  # one completion per call: every call is stored (and retried) on its own
    extra: dict[str, Any] = Field(default_factory=dict)
    token_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens",
        description="The request key for the completion budget; OpenAI's reasoning models "
        "answer 400 to max_tokens and take max_completion_tokens",
    )
    omit: list[str] = Field(
        default_factory=list, description="Sampling parameters not to send (a server rejects them)"
    )
    rate_limit: RateLimit | None = None
    mode: Literal["online", "batch"] = Field(
        "online", description="online: one HTTP call each; batch: the OpenAI Batch API"
    )

    @model_validator(mode="after")
    def _check_extra(self) -> EndpointConfig:
        clash = sorted((_RESERVED | _SAMPLING_FIELDS) & self.extra.keys())
        if clash:
            raise ValueError(f"extra must not set {clash}; use the named fields")
        unknown = sorted(set(self.omit) - _OMITTABLE)
        if unknown:
            raise ValueError(f"omit names {unknown}; it may name {sorted(_OMITTABLE)}")
        return self

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def key(self) -> str:
        """What the in-flight bound is per: the server, whatever the model."""
        return self.base_url.rstrip("/")

    def request_params(self, max_tokens: int | None = None) -> dict[str, Any]:
        """The exact request body minus ``messages`` (a fresh dict; safe to store).

        Built on each call rather than cached, so ``model_copy(update=…)`` can never leave a
        stale copy behind.
        """
        params: dict[str, Any] = {"model": self.model}
        params.update({name: getattr(self, name) for name in _SAMPLING_ORDER})
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if self.token_param != "max_tokens":
            params[self.token_param] = params.pop("max_tokens")
        params["stream"] = False
        for name in self.omit:
            params.pop(name, None)
        params.update(self.extra)
        return params

    def budget(self, params: dict[str, Any]) -> int:
        """The completion budget a request body asks for, whatever its key."""
        return int(params.get(self.token_param) or self.max_tokens)


_SAMPLING_ORDER = (
    "temperature",
    "top_p",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "n",
)
_SAMPLING_FIELDS = frozenset(_SAMPLING_ORDER)
# The completion budget can only be renamed (token_param), never dropped.
_OMITTABLE = _SAMPLING_FIELDS - {"max_tokens", "n"}


def safe_url(url: str) -> str:
    """The URL without user info, for logs (a base URL may embed credentials)."""
    try:
        return str(URL(url).with_user(None))
    except (ValueError, TypeError):
        return "<unparsable url>"
