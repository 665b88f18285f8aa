"""`cgd migrate`: Alembic upgrade to head, configured in code (no alembic.ini needed).

A PostgreSQL database that does not exist yet is created first (a fresh server has only
``postgres``); when that is not possible the error is one line saying what to run, not a traceback.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from cgd.db.engine import ensure_sqlite_dir

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or created; the message is one line for people."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def ensure_postgres_database(url: str) -> bool:
    """Creates the database ``url`` names when the server lacks it; True when it was created.
    Connects to the server's ``postgres`` maintenance database to look and to create."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError, ProgrammingError

    target = make_url(url)
    name = target.database
    if not target.drivername.startswith("postgresql") or not name:
        return False
    server = target.set(database="postgres")
    where = target.render_as_string(hide_password=True)
    engine = create_engine(server, isolation_level="AUTOCOMMIT")  # CREATE DATABASE: no transaction
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if found:
                return False
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot reach the PostgreSQL server of {where}: {reason}"
        ) from exc
    except ProgrammingError as exc:  # e.g. no CREATEDB privilege
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailable(
            f"database {name!r} does not exist and could not be created ({reason}); "
            f"run: createdb -h {target.host or 'localhost'} -U <admin user> {name}"
        ) from exc
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> bool:
    """Migrates ``url`` to ``revision``; True when the database had to be created first."""
    ensure_sqlite_dir(url)
    created = ensure_postgres_database(url)
    command.upgrade(alembic_config(url), revision)
    return created
