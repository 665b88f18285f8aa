"""The repo stands alone: docs link only to files that exist, and nothing points at material a
user's clone does not have (the team's reference shelf beside the repo)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
OUTSIDE = re.compile(
    r"\.\./shared|\"shared\" / \"data\"|METHOD\.md|PERFORMANCE\.md|RELIABILITY\.md|"
    r"STYLE\.md|ARCHITECTURE\.md"
)


def _project_files() -> list[Path]:
    files = []
    for pattern in ("*.py", "*.md", "*.sh", "*.toml", "*.yml", "*.yaml", "Makefile", "*.json"):
        files += [
            p
            for p in ROOT.rglob(pattern)
            if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
            and "node_modules" not in p.parts
        ]
    return sorted(set(files))


def test_relative_links_in_the_docs_resolve() -> None:
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).resolve().exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_nothing_refers_to_material_outside_the_repo() -> None:
    here = Path(__file__).resolve()
    hits = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in _project_files()
        if p != here
        for m in OUTSIDE.finditer(p.read_text(errors="replace"))
    ]
    assert hits == []


def test_the_docs_cover_method_reliability_and_performance() -> None:
    for name in ("method.md", "reliability.md", "performance.md", "benchmarks.md"):
        assert (ROOT / "docs" / name).exists(), name
