"""docs/configuration.md documents every setting (generated from cgd/settings.py), and the
``cgd`` console script answers ``--version``."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from cgd import __version__
from cgd.config_docs import OTHER_VARIABLES, PAGE, SHARED_DEPLOYMENT, env_var, render
from cgd.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CGD = Path(sys.executable).with_name("cgd")
REGENERATE = "cgd dev config-docs"


def test_every_setting_is_on_the_configuration_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    missing = [
        env_var(name, field.alias)
        for name, field in Settings.model_fields.items()
        if f"| `{name}` | `{env_var(name, field.alias)}` |" not in page
    ]
    assert not missing, f"docs/configuration.md lacks {missing}; run `{REGENERATE}`"


def test_configuration_page_is_not_stale() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), f"stale: run `{REGENERATE}`"


def test_every_setting_says_what_it_means() -> None:
    bare = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not bare, f"give these fields a description in cgd/settings.py: {bare}"


def test_every_cgd_variable_read_anywhere_is_documented() -> None:
    # Variables read outside the settings class (os.environ, typer envvar=) count too.
    pattern = re.compile(r"""(?:environ(?:\.get)?\(|environ\[|envvar=)\s*["'](CGD_[A-Z0-9_]+)""")
    read: set[str] = set()
    for folder in ("cgd", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            read.update(pattern.findall(path.read_text(encoding="utf-8")))
    documented = {env_var(n, f.alias) for n, f in Settings.model_fields.items()}
    documented |= set(OTHER_VARIABLES)
    assert read, "the scan found no variable at all: the pattern is wrong"
    assert not read - documented, f"undocumented: {sorted(read - documented)}"


def test_page_names_what_a_shared_deployment_must_set() -> None:
    page = PAGE.read_text(encoding="utf-8")
    shared = page.split("## Every setting")[0]
    for name in SHARED_DEPLOYMENT:
        assert f"`{env_var(name, Settings.model_fields[name].alias)}`" in shared
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/configuration.md" in readme
    for env in ("CGD_ENDPOINT_ALLOWLIST", "CGD_SECRET_KEY", "CGD_DATABASE_URL"):
        assert env in readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]


def test_config_docs_command_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    proc = subprocess.run(
        [str(CGD), "dev", "config-docs", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == render()


def test_cgd_version() -> None:
    proc = subprocess.run([str(CGD), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"cgd {__version__}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["version"] == __version__
