"""The store: SQLAlchemy 2.0 models, engine and session factory, queries, Alembic migrations.

Imports without torch. SQLite by default; any SQLAlchemy URL works (PostgreSQL is tested).
"""

from db.engine import create_db_engine, migrate, open_session, session_scope  # noqa: F401
