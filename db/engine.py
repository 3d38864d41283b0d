"""Engine, session factory and migrations. One transaction per boundary: only entry points commit."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from annotator.errors import DatabaseBusyError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BEGIN = "annotator_sqlite_begin"  # execution option: DEFERRED (reads) or IMMEDIATE (writes)


# SQLite: how often a write transaction asks again for the write lock, each try waiting up to BUSY_TIMEOUT_S
BUSY_TIMEOUT_S = 30
BEGIN_ATTEMPTS = 3
# the pragmas of every SQLite connection, the migrations' included: WAL lets readers go on while one writes;
# synchronous=FULL makes each commit durable (the audit trail survives a power cut, not only a crash)
SQLITE_PRAGMAS = ("PRAGMA foreign_keys=ON", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")


def _begin_sqlite(dbapi_conn, mode: str) -> None:
    """``BEGIN <mode>``; a write transaction (IMMEDIATE) that finds the lock still taken after the busy
    timeout asks again, BEGIN_ATTEMPTS times in all, then fails with a message saying what to do."""
    for attempt in range(1, BEGIN_ATTEMPTS + 1):
        try:
            dbapi_conn.execute(f"BEGIN {mode}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            log.warning("database busy (another command is writing); waiting again (%d/%d)", attempt,
                        BEGIN_ATTEMPTS)
    raise DatabaseBusyError(f"the database stayed locked by another writer for {BEGIN_ATTEMPTS * BUSY_TIMEOUT_S} s; "
                            "nothing was changed: run the command again when the other one has finished")


@lru_cache(maxsize=8)
def create_db_engine(url: str) -> Engine:
    """One engine per URL per process (a cache, not a global), made by ``build_engine``."""
    return build_engine(url)


def build_engine(url: str) -> Engine:
    """A new engine. SQLite gets WAL, synchronous=FULL, foreign keys and explicit transactions: ``BEGIN
    IMMEDIATE`` where the connection asks for it (``session_scope`` does for a write boundary), so a second
    writer waits for the first instead of failing on a stale read."""
    kwargs: dict = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # pysqlite (Python < 3.12) would open transactions itself, lazily, only before DML: a SAVEPOINT
            # issued first would start the transaction and its RELEASE would commit it. Take over: no
            # implicit transactions, and every transaction begins in the "begin" hook below.
            dbapi_conn.isolation_level = None
            for pragma in SQLITE_PRAGMAS:
                dbapi_conn.execute(pragma)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
            _begin_sqlite(conn.connection.dbapi_connection, mode)

    return engine


def write_engine(url: str) -> Engine:
    """The engine whose transactions are write transactions: on SQLite they begin IMMEDIATE."""
    return create_db_engine(url).execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})


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
def session_scope(url: str, *, write: bool = True) -> Iterator[Session]:
    """A transaction: commits when the block ends normally, rolls back on any exception. A write boundary
    (the default) takes SQLite's write lock when it begins; ``write=False`` for a boundary that only reads."""
    factory = sessionmaker(bind=write_engine(url) if write else create_db_engine(url), expire_on_commit=False)
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
