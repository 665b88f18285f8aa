"""The endpoint allow-list compares parsed URLs, not string prefixes."""

from __future__ import annotations

import pytest

from cgd.generation.spec import url_allowed

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
