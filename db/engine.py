"""Engine, session factory and migrations. One transaction per boundary: only entry points commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@lru_cache(maxsize=8)
def create_db_engine(url: str) -> Engine:
    """One engine per URL per process (a cache, not a global): SQLite gets WAL and foreign keys."""
    kwargs: dict = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _sqlite_begin_before_savepoint(conn, _name):
            # pysqlite (Python < 3.12) opens a transaction only before DML, so a SAVEPOINT issued first
            # would itself start the transaction and its RELEASE would commit everything: an outer
            # rollback could no longer undo it. Open the real transaction first.
            dbapi_conn = conn.connection.dbapi_connection
            if not dbapi_conn.in_transaction:
                dbapi_conn.execute("BEGIN")

    return engine


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def is_initialised(url: str) -> bool:
    return "alembic_version" in inspect(create_db_engine(url)).get_table_names()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: commits when the block ends normally, rolls back on any exception."""
    factory = sessionmaker(bind=create_db_engine(url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def open_session(url: str) -> Session:
    """A session the caller closes (long-lived servers); prefer session_scope."""
    return sessionmaker(bind=create_db_engine(url), expire_on_commit=False)()
