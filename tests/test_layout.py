"""The layout holds: the domain library knows no web framework, engines know no resources, the
task contract has no Celery, and the API starts without the worker extra or import-time side
effects."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("generation", "curation", "train", "verify")
RESOURCES = ("datasets", "jobs", "snapshots", "runs")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offenders(folder: Path, banned: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for name in _imports(path):
            if any(name == b or name.startswith(b + ".") for b in banned):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_the_domain_library_imports_no_service_and_no_web_framework() -> None:
    assert _offenders(ROOT / "cgd", ("services", "fastapi", "starlette", "celery")) == []


def test_engines_know_nothing_of_the_resources() -> None:
    banned = tuple(f"cgd.{r}" for r in RESOURCES)
    for engine in ENGINES:
        assert _offenders(ROOT / "cgd" / engine, banned) == [], engine


def test_each_resource_has_operations_schemas_and_errors() -> None:
    for resource in RESOURCES:
        for module in ("ops", "schemas", "errors"):
            assert (ROOT / "cgd" / resource / f"{module}.py").exists(), (resource, module)
        assert (ROOT / "services" / "api" / "routes" / f"{resource}.py").exists(), resource
        assert (ROOT / "cgd" / "cli" / f"{resource}.py").exists(), resource


_API_WITHOUT_WORKER = """
import importlib.abc, sys
BLOCKED = ("math_verify", "datasketch", "torch", "transformers", "peft")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed (blocked by the test)")
        return None

sys.meta_path.insert(0, Block())
import os
from pathlib import Path
import services.api.main as main
home = Path(os.environ["CGD_HOME"])
assert not (home / "broker").exists(), "importing the API created the broker folder"
assert "services.worker.tasks" not in sys.modules
from fastapi.testclient import TestClient
with TestClient(main.create_app()) as client:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
print("ok")
"""


def test_the_api_starts_without_the_worker_extra_and_without_import_side_effects(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGD_")}
    env["CGD_HOME"] = str(tmp_path / "home")
    subprocess.run([sys.executable, "-m", "services.cli", "migrate"], env=env, check=True, cwd=ROOT)
    out = subprocess.run(
        [sys.executable, "-c", _API_WITHOUT_WORKER],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_the_task_contract_imports_no_celery() -> None:
    code = "import sys, cgd.tasks; assert 'celery' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_each_enumeration_is_defined_once() -> None:
    """Mode, layout and status values are spelled out in cgd/enums.py and nowhere else."""
    needles = ('"no-critique"', '"prompt-completion"', '"retry_larger"')
    places = []
    for folder in ("cgd", "services"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            if any(n in text for n in needles):
                places.append(str(path.relative_to(ROOT)))
    assert places == ["cgd/enums.py"]
