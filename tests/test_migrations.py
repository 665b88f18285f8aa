"""The migrations build exactly the schema the models describe, and 0006 (issue 12) goes both
ways. On SQLite, the embedded default, where adding a foreign key needs Alembic's batch mode."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from cgd.db.migrate import alembic_config, upgrade
from cgd.db.models import Base


def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))
    finally:
        engine.dispose()


def test_migrations_match_the_models_and_0006_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cgd.db'}"
    upgrade(url)
    assert _diff(url) == []
    command.downgrade(alembic_config(url), "0005")
    engine = create_engine(url)
    tables = inspect(engine).get_table_names()
    columns = {c["name"] for c in inspect(engine).get_columns("dataset_items")}
    engine.dispose()
    assert "prompt_templates" not in tables and "solution" not in columns
    upgrade(url)
    assert _diff(url) == []
