"""Which statements read a whole table: the SQL a block of code runs, captured, and the database's query
plan of each read: SQLite's EXPLAIN QUERY PLAN, or PostgreSQL's EXPLAIN with sequential scans switched off
for the statement (its planner reads small tables whole by choice; switched off, a sequential scan that
remains is one no index can serve). A read that scans one of our tables without an index grows with the
table on every call; the scale benchmark prints them and a test keeps the protocol's hot paths free of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from db.models import Base


@dataclass(frozen=True)
class Statement:
    sql: str
    params: object


@contextmanager
def captured_statements() -> Iterator[list[Statement]]:
    """Every statement any engine runs inside the block, in order."""
    seen: list[Statement] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):
        seen.append(Statement(statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def full_scans(connection: Connection, statements: list[Statement]) -> list[tuple[str, str]]:
    """(statement, plan line) for each SELECT whose plan scans one of our tables with no index (SQLite or
    PostgreSQL, the connection's)."""
    tables = set(Base.metadata.tables)
    postgres = connection.dialect.name == "postgresql"
    found, done = [], set()
    if postgres:
        connection.exec_driver_sql("SET enable_seqscan = off")
    try:
        for st in statements:
            if not st.sql.lstrip().upper().startswith("SELECT") or st.sql in done:
                continue
            done.add(st.sql)
            params = st.params if isinstance(st.params, (tuple, list, dict)) else ()
            rows = connection.exec_driver_sql(("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + st.sql, params)
            for row in rows.all():
                detail = str(row[-1]).strip()
                match = re.search(r"Seq Scan on (\w+)" if postgres else r"^SCAN (\w+)", detail)
                if match and match.group(1) in tables and "INDEX" not in detail:
                    found.append((" ".join(st.sql.split()), detail))
    finally:
        if postgres:
            connection.exec_driver_sql("RESET enable_seqscan")
    return found

