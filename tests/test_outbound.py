"""Every request made on a team's behalf goes through the guarded outbound client: the
allow-list checked per request, no redirect followed, bounded answers (cgd/outbound.py).

A team's endpoint answers 307 to an internal service; on every outbound path (chat, the Batch
API's five calls, the metrics page, the breaker's probe, preflight, the hang watch's liveness
check) the internal service must see nothing. A scan of the code fails when a module builds an
HTTP client of its own.
"""

from __future__ import annotations

import ast
import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cgd.errors import InvalidRequest
from cgd.generation.batch import BatchApi
from cgd.generation.breaker import Breaker, probe
from cgd.generation.hangs import HangConfig, HangWatch
from cgd.generation.spec import JobSpec
from cgd.jobs import preflight
from cgd.llm_client import EndpointConfig, LLMClient, LLMError
from cgd.outbound import allowlist_guard
from cgd.templates import get_template

ROOT = Path(__file__).resolve().parents[1]

# Modules that may build an HTTP client, and why none of them acts for a team.
NOT_ON_A_TEAMS_BEHALF = {
    "cgd/outbound.py": "the guarded client itself",
    "cgd/client/": "the user's own client for our REST API",
    "cgd/train/evaluate.py": "the trainer's eval, against the vLLM server it started itself",
    "cgd/quickstart.py": "the local demo talking to the API and servers it started",
    "cgd/local_vllm.py": "the operator's local vLLM, started by `cgd dev vllm`",
    "services/worker/trainer.py": "the trainer reporting to our own API",
}
CLIENT_FACTORIES = {
    ("aiohttp", "ClientSession"),
    ("aiohttp", "request"),
    ("aiohttp", "TCPConnector"),
    ("httpx", "Client"),
    ("httpx", "AsyncClient"),
    ("httpx", "get"),
    ("httpx", "post"),
    ("httpx", "put"),
    ("httpx", "delete"),
    ("httpx", "request"),
    ("httpx", "stream"),
}
FORBIDDEN_MODULES = {"requests", "urllib.request", "http.client", "urllib3", "pycurl"}


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for name in [*names, *([module] if module else [])]:
                if name in FORBIDDEN_MODULES:
                    found.append(f"line {node.lineno}: imports {name}")
            if isinstance(node, ast.ImportFrom) and module in ("aiohttp", "httpx"):
                for alias in node.names:
                    if (module, alias.name) in CLIENT_FACTORIES:
                        found.append(f"line {node.lineno}: imports {module}.{alias.name}")
        call = node.func if isinstance(node, ast.Call) else None
        if (
            isinstance(call, ast.Attribute)
            and isinstance(call.value, ast.Name)
            and (call.value.id, call.attr) in CLIENT_FACTORIES
        ):
            found.append(f"line {node.lineno}: {call.value.id}.{call.attr}(…)")
    return found


def test_no_module_acting_for_a_team_builds_its_own_http_client() -> None:
    files = [*(ROOT / "cgd").rglob("*.py"), *(ROOT / "services").rglob("*.py")]
    scanned, offenders = 0, {}
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel in NOT_ON_A_TEAMS_BEHALF or rel.startswith(("cgd/client/", "cgd/simulator/")):
            continue  # the simulator is a server, not a client of teams' servers
        scanned += 1
        if found := _offences(path):
            offenders[rel] = found
    assert scanned > 100
    assert offenders == {}, f"outbound requests must go through cgd/outbound.py: {offenders}"


def test_the_scan_catches_a_bypass(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import httpx\nimport aiohttp\nfrom urllib.request import urlopen\n"
        "def f():\n    httpx.get('http://x')\n    return aiohttp.ClientSession()\n"
    )
    assert len(_offences(bad)) == 3


# -- a 307 on every path ---------------------------------------------------------------------


@dataclass
class Rig:
    redirector: str  # the team's endpoint root: answers 307 to everything
    internal: str  # an internal service the 307 points at
    seen: list[tuple[str, str]] = field(default_factory=list)  # what the endpoint received
    leaked: list[tuple[str, str]] = field(default_factory=list)  # what reached the internal one

    @property
    def base_url(self) -> str:
        return f"{self.redirector}/v1"


@asynccontextmanager
async def rig() -> AsyncIterator[Rig]:
    r = Rig("", "")

    async def internal(request: web.Request) -> web.Response:
        r.leaked.append((request.method, request.path))
        return web.json_response({"id": "secret", "data": [{"id": "m"}], "choices": []})

    async def redirect(request: web.Request) -> web.Response:
        r.seen.append((request.method, request.path))
        await request.read()
        return web.Response(status=307, headers={"Location": f"{r.internal}{request.path}"})

    runners = []
    for handler in (internal, redirect):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        runners.append(runner)
        if handler is internal:
            r.internal = f"http://127.0.0.1:{port}"
        else:
            r.redirector = f"http://127.0.0.1:{port}"
    try:
        yield r
    finally:
        for runner in runners:
            await runner.cleanup()


def _run(body: Callable[[Rig], Awaitable[None]]) -> Rig:
    async def main() -> Rig:
        async with rig() as r:
            await body(r)
            return r

    return asyncio.run(main())


def _client(allow: str) -> LLMClient:
    return LLMClient(max_attempts=2, backoff_base_s=0.01, url_guard=allowlist_guard(allow))


def test_chat_does_not_follow_a_redirect() -> None:
    async def body(r: Rig) -> None:
        async with _client(r.base_url) as client:
            with pytest.raises(LLMError) as err:
                await client.chat(EndpointConfig(base_url=r.base_url, model="m"), PROMPT)
        assert err.value.kind == "client_error"
        assert "redirects are not followed" in str(err.value)

    r = _run(body)
    assert r.seen == [("POST", "/v1/chat/completions")] and r.leaked == []


@pytest.mark.parametrize("call", ["upload", "create", "find", "get", "content"])
def test_batch_api_does_not_follow_a_redirect(call: str) -> None:
    async def body(r: Rig) -> None:
        async with _client(r.base_url) as client:
            api = BatchApi(client.outbound, client.retry, 5.0)
            ep = EndpointConfig(base_url=r.base_url, model="m", mode="batch")
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "upload": lambda: api.upload(ep, b'{"custom_id": "0:0:probe"}\n'),
                "create": lambda: api.create(ep, "file-1", "job:0:probe"),
                "find": lambda: api.find(ep, "job:0:probe"),
                "get": lambda: api.get(ep, "batch-1"),
                "content": lambda: api.content(ep, "file-2"),
            }
            with pytest.raises(Exception, match="redirects are not followed"):
                await calls[call]()

    r = _run(body)
    assert len(r.seen) == 1 and r.leaked == []


@pytest.mark.parametrize("allow_root", [True, False])
def test_metrics_page_is_read_only_where_allowed_and_never_through_a_redirect(
    allow_root: bool,
) -> None:
    async def body(r: Rig) -> None:
        allow = f"{r.redirector}/" if allow_root else r.base_url
        async with _client(allow) as client:
            ep = EndpointConfig(base_url=r.base_url, model="m")
            with pytest.raises(LLMError):
                await client.chat(ep, PROMPT)  # demand: the metrics loop reads while active
            await asyncio.sleep(1.5)

    r = _run(body)
    metrics = [s for s in r.seen if s[1] == "/metrics"]
    assert bool(metrics) == allow_root  # outside the allow-list: never fetched
    assert r.leaked == []


def test_breaker_probe_does_not_follow_a_redirect() -> None:
    async def body(r: Rig) -> None:
        ep = EndpointConfig(base_url=r.base_url, model="m")
        error = await asyncio.to_thread(probe, ep, 2.0, allowlist_guard(r.base_url))
        assert error is not None and "redirects are not followed" in error
        # Outside the allow-list the probe sends nothing at all.
        refused = await asyncio.to_thread(probe, ep, 2.0, allowlist_guard("http://elsewhere/"))
        assert refused is not None and refused.startswith("refused")

    r = _run(body)
    assert r.seen == [("POST", "/v1/chat/completions")] and r.leaked == []


def test_preflight_does_not_follow_a_redirect() -> None:
    async def body(r: Rig) -> None:
        ep = {"base_url": r.base_url, "model": "m"}
        spec = JobSpec.model_validate(
            {"dataset_id": str(uuid.uuid4()), "student": ep, "teacher": ep}
        )
        with pytest.raises(InvalidRequest) as err:
            await asyncio.to_thread(preflight.check, spec, 2.0, allowlist_guard(r.base_url))
        assert "redirects are not followed" in str(err.value.detail)

    r = _run(body)
    assert ("GET", "/v1/models") in r.seen and r.leaked == []


def test_hang_watch_liveness_check_does_not_follow_a_redirect() -> None:
    async def body(r: Rig) -> None:
        async with _client(r.base_url) as client:
            watch = HangWatch(client, Breaker(5), HangConfig())
            assert await watch._alive(r.base_url)  # a 307 is an answer: the server is there

    r = _run(body)
    assert r.seen == [("GET", "/v1/models")] and r.leaked == []


def test_an_answer_over_the_cap_is_not_read() -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (2 * 1024**2), content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", big)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        try:
            client = LLMClient(max_attempts=1, url_guard=allowlist_guard(base))
            client.outbound.max_response_bytes = 1024**2
            async with client:
                with pytest.raises(LLMError) as err:
                    await client.chat(EndpointConfig(base_url=base, model="m"), PROMPT)
            assert err.value.kind == "bad_response" and "longer than" in str(err.value)
        finally:
            await runner.cleanup()

    asyncio.run(main())


PROMPT = get_template("cgd").probe("What is 1 + 1?")
