"""``/docs`` and ``/redoc`` load nothing from another host (issue 26, part 7): every script,
stylesheet and icon they reference is served by the API, from the pinned bundles it ships."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.conftest import ApiServer

pytestmark = pytest.mark.integration

# src=/href= attributes and the url: '...' / redoc's spec-url the pages hand to the scripts.
_REFERENCE = re.compile(r"""(?:src|href|url|spec-url)\s*[=:]\s*["']([^"']+)["']""")


@pytest.mark.parametrize(("page", "assets"), [("/docs", 3), ("/redoc", 2)])
def test_docs_pages_reference_only_the_api_and_their_assets_load(
    api_server: ApiServer, page: str, assets: int
) -> None:
    with httpx.Client(base_url=api_server.url, timeout=30) as c:
        r = c.get(page)
        assert r.status_code == 200, r.text
        html = r.text
        refs = _REFERENCE.findall(html)
        external = [u for u in refs if urlsplit(urljoin(api_server.url, u)).netloc
                    != urlsplit(api_server.url).netloc]  # fmt: skip
        assert not external, external
        assert re.findall(r"(?:https?:)?//[\w.-]+", html) == []  # no absolute URL at all
        bundle = [u for u in refs if u.startswith("/docs/assets/")]
        assert len(bundle) >= assets, refs
        for url in bundle:
            got = c.get(url)
            assert got.status_code == 200, (url, got.status_code)
            assert len(got.content) > 1000, url  # the real bundle, not an error page
        assert c.get("/openapi.json").status_code == 200
