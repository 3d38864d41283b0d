"""Alembic's entry: migrations run on the same engine as the tool (on SQLite: WAL, synchronous=FULL, the
busy timeout and a write transaction that begins IMMEDIATE), with foreign keys off while the schema
changes (a batch migration rebuilds a table; with them on, dropping the old copy would cascade) and
checked before they are turned back on."""

from alembic import context

from db.engine import SQLITE_BEGIN, build_engine
from db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        # the tool's pragmas and BEGIN hook on an engine of its own, closed when the migration ends (SQLite
        # then folds its write-ahead log back into the file)
        engine = build_engine(config.get_main_option("sqlalchemy.url"))
        try:
            with engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).connect() as connection:
                _run(connection)
        finally:
            engine.dispose()
    else:
        _run(connectable)


def _run(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    dbapi_conn = connection.connection.dbapi_connection if sqlite else None
    if sqlite and not dbapi_conn.in_transaction:  # the pragma is a no-op inside a transaction
        dbapi_conn.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            broken = dbapi_conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")
    finally:
        if sqlite and not dbapi_conn.in_transaction:
            dbapi_conn.execute("PRAGMA foreign_keys=ON")


run_migrations_online()
