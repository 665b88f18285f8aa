"""The README's Python client examples, run as written against a live API, a Celery worker and
the simulated LLM server. The only substitution: the simulator's port for the README's 8124."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cgd.simulator import SimulatorProcess
from tests.conftest import ROOT, data_file, make_key

pytestmark = pytest.mark.integration

SIM_URL = "http://127.0.0.1:8124/v1"


def client_examples() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The Python client", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorProcess]:
    # The README uploads gsm8k_200.jsonl from the working directory: the first 20 rows here.
    with open(data_file("gsm8k_train.jsonl")) as src:
        (tmp_path / "gsm8k_200.jsonl").write_text("".join(next(src) for _ in range(20)))
    args = ["--port", "0", "--dataset", str(tmp_path / "gsm8k_200.jsonl"), "--latency", "0.01"]
    with SimulatorProcess(args) as s:
        yield s


def test_readme_client_examples_run(  # type: ignore[no-untyped-def]
    api_server, sessionmaker_, start_worker, sim, tmp_path, monkeypatch
) -> None:
    examples = client_examples()
    assert len(examples) == 3 and SIM_URL in examples[0]
    start_worker()
    monkeypatch.setenv("CGD_API_URL", api_server.url)
    monkeypatch.setenv("CGD_API_KEY", make_key(sessionmaker_))
    monkeypatch.chdir(tmp_path)
    outputs = []
    for code in examples:
        code = code.replace(SIM_URL, sim.base_url.rstrip("/"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
        outputs.append(out.getvalue())
    sync, errors, listing = outputs
    assert re.match(
        r"completed 20 items; \d+ tokens\n"
        r"\d+ fixed by the critique; snapshot gsm8k-cgd: \d+ rows\n$",
        sync,
    ), sync
    assert (tmp_path / "train.jsonl").stat().st_size > 0
    assert errors == "404 JobNotFound\n"
    lines = listing.splitlines()
    assert len(lines) == 1 and lines[0].endswith("completed 100%"), listing
