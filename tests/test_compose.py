"""The GPU-host deployment: docker-compose.yml, .env.example and the images in docker/.

Static checks parse the files; ``test_compose_config_validates`` runs the real Compose validator
(``docker-compose`` or ``docker compose``) when one is installed and is skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
API_DOCKERFILE = ROOT / "docker" / "api.Dockerfile"
TRAINER_DOCKERFILE = ROOT / "docker" / "trainer.Dockerfile"

SERVICES = {"postgres", "redis", "migrate", "api", "worker", "teacher", "student", "trainer"}
ONE_SHOT = {"migrate"}
VLLM = ("teacher", "student")
HF_CACHE_PATH = "/root/.cache/huggingface"
VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")


def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(compose_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def with_defaults(value: str) -> str:
    """``${VAR:-default}`` → default (what an unset variable gives)."""
    return VAR_RE.sub(lambda m: m.group(2)[2:] if m.group(2).startswith(":-") else "", value)


def seconds(duration: str | int) -> float:
    if isinstance(duration, int):
        return float(duration)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, f"not a duration: {duration!r}"
    h, m, s = (int(p or 0) for p in parts.groups())
    return h * 3600 + m * 60 + s


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return [d for d in reservations.get("devices", []) if "gpu" in d.get("capabilities", [])]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path → source, for short-syntax ``source:target[:mode]`` entries."""
    out = {}
    for entry in service.get("volumes", []):
        source, target, *_ = entry.split(":")
        out[target] = source
    return out


def test_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= SERVICES
    extra = set(services) - SERVICES
    for name in extra:  # optional services (flower) stay behind a profile
        assert services[name].get("profiles"), f"{name} would start with a plain `up`"


def test_long_lived_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", "a one-shot service must not be restarted"
            continue
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert svc.get("restart") == "unless-stopped", name


def test_vllm_services(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name in VLLM:
        svc = services[name]
        assert svc["image"].startswith("vllm/vllm-openai:v"), name
        assert svc.get("ipc") == "host", name
        devices = gpu_devices(svc)
        assert devices and all(d.get("driver") == "nvidia" for d in devices), name
        assert all(d.get("device_ids") and "count" not in d for d in devices), name
        ids = [with_defaults(i) for d in devices for i in d["device_ids"]]
        assert all(re.fullmatch(r"[\w-]+(,[\w-]+)*", i) for i in ids), (name, ids)
        cache = volume_mounts(svc).get(HF_CACHE_PATH)
        assert cache in compose["volumes"], f"{name}: no named Hugging Face cache volume"
        assert seconds(svc["healthcheck"]["start_period"]) >= 300, name
        assert "/health" in " ".join(svc["healthcheck"]["test"]), name
        assert "HF_TOKEN" in environment(svc), name
        command = svc["command"] if isinstance(svc["command"], str) else " ".join(svc["command"])
        for flag in ("--model", "--served-model-name", "--enable-prefix-caching", "--port 8000"):
            assert flag in command, (name, flag)
    # One shared cache for both servers.
    assert (
        volume_mounts(services["teacher"])[HF_CACHE_PATH]
        == (volume_mounts(services["student"])[HF_CACHE_PATH])
    )
    # Different GPUs by default.
    ids = {name: gpu_devices(services[name])[0]["device_ids"][0] for name in VLLM}
    assert with_defaults(ids["teacher"]) != with_defaults(ids["student"])


def test_trainer(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    svc = services["trainer"]
    assert svc["command"] == ["cgd", "trainer"]
    devices = gpu_devices(svc)
    assert devices and all(d.get("device_ids") for d in devices)
    env = environment(svc)
    assert env["CGD_API_URL"] == "http://api:8000"
    assert env["CGD_BROKER_URL"] == "redis://redis:6379/0"
    runs = volume_mounts(svc).get(env["CGD_TRAINER_DIR"])
    assert runs in compose["volumes"], "CGD_TRAINER_DIR must be a named volume"
    assert any(p.endswith("/.cache/huggingface") for p in volume_mounts(svc))
    assert svc["build"]["dockerfile"] == "docker/trainer.Dockerfile"


def test_cgd_services(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["command"] == ["cgd", "migrate"]
    assert services["api"]["command"] == ["cgd", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert services["worker"]["command"] == ["cgd", "worker", "--queues", "generation,curation"]
    assert any(str(p).endswith(":8000") for p in services["api"]["ports"])
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("migrate", "api", "worker"):
        svc = services[name]
        assert svc["build"]["dockerfile"] == "docker/api.Dockerfile", name
        env = environment(svc)
        assert env["CGD_DATABASE_URL"].startswith("postgresql+psycopg://cgd:${POSTGRES_PASSWORD:?")
        assert env["CGD_DATABASE_URL"].endswith("@postgres:5432/cgd")
        assert env["CGD_BROKER_URL"] == "redis://redis:6379/0"
        # The trailing "/" keeps "http://teacher:8000@elsewhere/" out.
        allow = with_defaults(env["CGD_ENDPOINT_ALLOWLIST"]).split(",")
        assert set(allow) == {"http://teacher:8000/", "http://student:8000/"}


def test_depends_on_waits_for_readiness(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "migrate": {"postgres": "service_healthy"},
        "api": {
            "migrate": "service_completed_successfully",
            "postgres": "service_healthy",
            "redis": "service_healthy",
        },
        "worker": {
            "migrate": "service_completed_successfully",
            "postgres": "service_healthy",
            "redis": "service_healthy",
        },
        "trainer": {"api": "service_healthy", "redis": "service_healthy"},
    }
    for name, deps in expected.items():
        got = {dep: spec.get("condition") for dep, spec in services[name]["depends_on"].items()}
        assert got == deps, name
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for dep, spec in deps.items():
            assert spec["condition"] in ("service_healthy", "service_completed_successfully")
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            else:
                assert dep in ONE_SHOT, (name, dep)


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = with_defaults(svc["image"])
        if "@sha256:" in image:
            continue
        repo, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag and tag, f"{name}: untagged image {image}"
        assert tag != "latest" and not tag.startswith("latest-"), f"{name}: {image}"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} is not a version"
    for dockerfile in (API_DOCKERFILE, TRAINER_DOCKERFILE):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("FROM "):
                image = line.split()[1]
                assert ":" in image and not image.endswith(":latest"), (dockerfile.name, image)


def test_secrets_fail_fast() -> None:
    text = compose_text()
    uses = [m for m in VAR_RE.finditer(text) if m.group(1) == "POSTGRES_PASSWORD"]
    assert uses, "POSTGRES_PASSWORD is not read"
    for m in uses:
        assert m.group(2).startswith(":?") and len(m.group(2)) > 2, m.group(0)
    assert "PASSWORD: ${POSTGRES_PASSWORD:?" in text


def test_env_example_documents_every_variable() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    used = {m.group(1) for m in VAR_RE.finditer(compose_text())}
    assert used, "no variables found"
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    assert re.search(r"^POSTGRES_PASSWORD=$", ENV_EXAMPLE.read_text(), re.M), (
        "ship no default password: the empty value makes compose fail fast"
    )


def pip_installs(dockerfile: Path) -> list[str]:
    """The ``pip install`` commands of the RUN lines (continuations joined, split at ``&&``)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    commands = (c.strip() for line in text.splitlines() for c in re.split(r"&&|;", line))
    return [c for c in commands if "pip install" in c]


def test_api_image_has_no_torch() -> None:
    installs = " ".join(pip_installs(API_DOCKERFILE))
    extras = {
        e.strip() for group in re.findall(r"\.\[([^\]]*)\]", installs) for e in group.split(",")
    }
    assert extras == {"api", "worker"}
    assert "torch" not in installs.lower()
    assert "train" not in extras
    text = API_DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim", text, re.M)


def test_trainer_image_pins_torch() -> None:
    text = TRAINER_DOCKERFILE.read_text()
    version = re.search(r"^ARG TORCH_VERSION=(\d+\.\d+\.\d+)$", text, re.M)
    assert version, "torch version not pinned"
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu\d+$", text, re.M)
    installs = " ".join(pip_installs(TRAINER_DOCKERFILE))
    assert '"torch==${TORCH_VERSION}"' in installs
    extras = {
        e.strip() for group in re.findall(r"\.\[([^\]]*)\]", installs) for e in group.split(",")
    }
    assert extras == {"train", "worker"}


@pytest.mark.parametrize("dockerfile", [API_DOCKERFILE, TRAINER_DOCKERFILE], ids=lambda p: p.name)
def test_images_run_unprivileged(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0", "0:0"), "the image must end as a non-root user"
    assert "PYTHONUNBUFFERED=1" in text


def test_dockerignore() -> None:
    ignored = {
        line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
    }
    for path in (".git", ".venv", ".env", "tests", "**/__pycache__", ".pytest_cache"):
        assert path in ignored, path
    for needed in ("cgd", "services", "migrations", "pyproject.toml", "README.md"):
        assert needed not in ignored, needed


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def run_config(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COMPOSE_")
        and k not in {m.group(1) for m in VAR_RE.finditer(compose_text())}
    }
    return subprocess.run(
        [*cmd, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_config_validates() -> None:
    cmd = compose_command()
    if cmd is None:
        pytest.skip(
            "no Compose validator: install one (Debian: `apt-get install -y docker-compose`) "
            "to validate docker-compose.yml"
        )
    ok = run_config(cmd, POSTGRES_PASSWORD="x")
    assert ok.returncode == 0, ok.stderr
    missing = run_config(cmd)
    assert missing.returncode != 0, "compose must refuse to run without POSTGRES_PASSWORD"
    assert "POSTGRES_PASSWORD" in missing.stderr + missing.stdout


def test_one_torch_everywhere() -> None:
    """The trainer image, the CI/dev set-up and the vLLM virtualenv pin one torch version, and
    the ``train`` extra admits it."""
    from packaging.requirements import Requirement

    dockerfile = (ROOT / "docker" / "trainer.Dockerfile").read_text()
    image = re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert image, "docker/trainer.Dockerfile has no ARG TORCH_VERSION"
    pins = {"docker/trainer.Dockerfile": image.group(1)}
    for script in ("scripts/setup.sh", "scripts/vllm.sh"):
        found = re.findall(r'"torch==([^"]+)"', (ROOT / script).read_text())
        assert found, f"{script} does not pin torch"
        pins.update({f"{script}#{i}": v for i, v in enumerate(found)})
    assert len(set(pins.values())) == 1, pins
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(
        Requirement(r)
        for r in project["optional-dependencies"]["train"]
        if Requirement(r).name == "torch"
    )
    assert torch_req.specifier.contains(image.group(1)), (torch_req, image.group(1))
