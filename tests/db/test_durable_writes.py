"""SQLite as the durable default: a second writer waits for the first (it does not fail on a stale read),
every connection (the migrations' too) runs synchronous=FULL in WAL, the wait is bounded and then says
what to do; the migration that adds the decision key keeps rows recorded twice, marked. On a real file,
with real processes."""

from __future__ import annotations

import multiprocessing

import pytest
from alembic import command
from sqlalchemy import event, func, select, text

from db.engine import alembic_config, build_engine, create_db_engine, migrate, session_scope
from db.models import Decision, Image


def _image(sha: str) -> Image:
    return Image(sha256=sha, store_path=f"store/images/{sha}.png", file_name=f"{sha}.png", cls="covid",
                 dataset="test", width=4, height=3, bit_depth=8, resolution_bin="xs", contrast=0.1, snr=20.0)


def _first_writer(url: str, started, release) -> None:
    with session_scope(url) as session:
        session.add(_image("a" * 64))
        session.flush()
        started.set()  # holds its write transaction open until the second writer has begun its own
        release.wait(60)


def _second_writer(url: str, begun, seen) -> None:
    begun.set()
    with session_scope(url) as session:  # reads, then writes: on a stale snapshot this failed with "locked"
        seen.value = session.scalar(select(func.count(Image.id)))
        session.add(_image("b" * 64))


def test_a_second_writer_waits_for_the_first_and_sees_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    migrate(url)
    ctx = multiprocessing.get_context("spawn")
    started, release, begun = ctx.Event(), ctx.Event(), ctx.Event()
    seen = ctx.Value("i", -1)
    first = ctx.Process(target=_first_writer, args=(url, started, release))
    first.start()
    assert started.wait(60)
    second = ctx.Process(target=_second_writer, args=(url, begun, seen))
    second.start()
    assert begun.wait(60)
    second.join(1.0)  # (a head start only; the outcome does not depend on it)
    release.set()
    first.join(60)
    second.join(90)
    assert (first.exitcode, second.exitcode) == (0, 0)
    assert seen.value == 1  # it began after the first committed, so its read was current
    with session_scope(url, write=False) as session:
        assert sorted(session.scalars(select(Image.sha256))) == ["a" * 64, "b" * 64]


def test_a_writer_that_never_gets_the_lock_stops_with_a_clear_message(tmp_path, monkeypatch):
    import db.engine as db_engine
    from annotator.errors import DatabaseBusyError

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    migrate(url)
    monkeypatch.setattr(db_engine, "BUSY_TIMEOUT_S", 0.2)  # each try waits 0.2 s instead of 30 s
    other = build_engine(url)  # a second engine: its own connections, as another process has
    try:
        with session_scope(url) as holder:
            holder.add(_image("c" * 64))
            holder.flush()  # holds the write lock until the block ends
            with pytest.raises(DatabaseBusyError, match="stayed locked by another writer .* run the command again"):
                with other.execution_options(annotator_sqlite_begin="IMMEDIATE").connect() as conn:
                    conn.execute(text("SELECT 1"))
    finally:
        other.dispose()
    with session_scope(url, write=False) as session:  # the holder's work was not disturbed
        assert session.scalar(select(func.count(Image.id))) == 1


def test_every_connection_is_durable_wal_with_foreign_keys(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    migrate(url)
    with create_db_engine(url).connect() as conn:
        seen = tuple(conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                     for p in ("synchronous", "journal_mode", "foreign_keys", "busy_timeout"))
    assert seen == (2, "wal", 1, 30000)  # 2 = FULL


def test_the_migrations_run_on_the_same_pragmas(tmp_path):
    from sqlalchemy import Engine

    url = f"sqlite:///{tmp_path / 'm.db'}"
    seen = []

    def _record(conn):  # every engine's transactions: the migration's engine is one of its own
        if str(conn.engine.url) == url:
            seen.append(conn.connection.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0])

    event.listen(Engine, "begin", _record)
    try:
        migrate(url)
    finally:
        event.remove(Engine, "begin", _record)
    assert seen and set(seen) == {2}  # synchronous=FULL on the migration's connections
    with create_db_engine(url).connect() as conn:  # foreign keys are back on after the migration switched them off
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_the_key_migration_keeps_rows_recorded_twice_but_marks_them(db_url):
    command.upgrade(alembic_config(db_url), "0001")
    with create_db_engine(db_url).begin() as conn:
        conn.execute(text("INSERT INTO images (id, sha256, store_path, file_name, width, height, bit_depth, "
                          "resolution_bin, contrast, snr, state, attributes, created_at) VALUES (1, 'x', 's', 'f', "
                          "4, 3, 8, 'xs', 0.1, 20, 'accepted', '{}', CURRENT_TIMESTAMP)"))
        for row_id, annotation_id in ((1, 10), (2, 10), (3, 11), (4, 10)):
            conn.execute(text("INSERT INTO decisions (id, image_id, actor, role, decision, ls_annotation_id, "
                              "ls_updated_at, valid, created_at) VALUES (:id, 1, 'ra', 'RA', 'accept', :a, "
                              "'2026-12-01T10:00:00Z', true, CURRENT_TIMESTAMP)"), {"id": row_id, "a": annotation_id})
    migrate(db_url)
    with session_scope(db_url, write=False) as session:
        rows = {d.id: d for d in session.scalars(select(Decision))}
    assert [(i, rows[i].valid) for i in sorted(rows)] == [(1, True), (2, False), (3, True), (4, False)]
    assert rows[2].ls_updated_at == "2026-12-01T10:00:00Z dup#2" and "copy of decision 1" in rows[2].message
    assert rows[1].ls_updated_at == rows[3].ls_updated_at == "2026-12-01T10:00:00Z"
