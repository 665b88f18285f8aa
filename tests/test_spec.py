"""The endpoint allow-list compares parsed URLs, not string prefixes."""

from __future__ import annotations

import pytest

from cgd.errors import InvalidRequest
from cgd.generation.spec import JobSpec, check_spec, url_allowed

ALLOW = "http://teacher:8000, http://student:8000/v1"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://teacher:8000/v1", True),
        ("http://teacher:8000", True),
        ("http://student:8000/v1", True),
        ("http://student:8000/v1/", True),
        ("http://teacher:8000@evil.example/v1", False),  # userinfo trick
        ("http://teacher:8000.evil.example/v1", False),  # host suffix trick
        ("http://student:8000/v1x", False),  # path prefix must end at a segment
        ("http://student:8000/v2", False),
        ("https://teacher:8000/v1", False),  # scheme must match
        ("http://teacher:80/v1", False),  # port must match
        ("ftp://teacher:8000/v1", False),
        ("not a url", False),
    ],
)
def test_url_allowed(url: str, ok: bool) -> None:
    assert url_allowed(url, ALLOW) is ok


def test_star_allows_everything() -> None:
    assert url_allowed("http://anything:1234/v1", "*")


def _spec(**over: object) -> JobSpec:
    body: dict[str, object] = {
        "dataset_id": "00000000-0000-0000-0000-000000000001",
        "student": {"base_url": "http://s:1/v1", "model": "s"},
        "teacher": {"base_url": "http://t:1/v1", "model": "t"},
        **over,
    }
    return JobSpec.model_validate(body)


def test_generation_defaults_decode_greedily_with_a_long_budget() -> None:
    """Item 8 of issue 12: the reference decodes greedily with a long budget; a truncated
    answer is retried larger rather than dropped."""
    spec = _spec()
    assert spec.teacher.temperature == 0.0 and spec.teacher.max_tokens == 8192
    assert spec.student is not None and spec.student.temperature == 0.0
    assert spec.truncation == "retry_larger"
    sent = spec.teacher.request_params()
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 8192


def test_several_greedy_samples_are_refused() -> None:
    with pytest.raises(InvalidRequest) as exc:
        check_spec(_spec(samples_per_prompt=2), "*")
    assert exc.value.detail["field"] == "student.temperature"
    sampled = _spec(
        samples_per_prompt=2,
        student={"base_url": "http://s:1/v1", "model": "s", "temperature": 0.7},
    )
    check_spec(sampled, "*")
    check_spec(_spec(samples_per_prompt=2, student=None), "*")  # dataset responses: no sampling
