"""The engine moves images and writes history on a fresh SQLite file; the history replays."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from annotator.errors import ProtocolError
from db.engine import session_scope
from db.models import Image, Transition
from workflows import engine


def _image(session, n: int) -> Image:
    image = Image(sha256=f"{n:064x}", store_path=f"store/images/{n}.png", file_name=f"{n}.png", cls="normal",
                  dataset="t", width=8, height=8, bit_depth=8, resolution_bin="xs", contrast=0.2, snr=20.0)
    session.add(image)
    session.flush()
    return image


def test_moves_append_history_and_replay(workspace):
    url = workspace.database_url
    with session_scope(url) as session:
        image = _image(session, 1)
        for event, role in (("predict", "system"), ("reject", "RA"), ("correct", "RA"), ("sample", "system"),
                            ("verify", "MD")):
            engine.move(session, image, event, actor=f"{role.lower()}1", role=role, model_version="unet-resnet18-abc")
        image_id = image.id
    with session_scope(url) as session:  # a new session: restored from the DB
        image = session.get(Image, image_id)
        assert image.state == "verified"
        rows = engine.history(session, image_id)
        assert [(r.event, r.from_state, r.to_state) for r in rows] == [
            ("predict", "pool", "predicted"), ("reject", "predicted", "rejected"),
            ("correct", "rejected", "corrected"), ("sample", "corrected", "sampled"),
            ("verify", "sampled", "verified")]
        assert [r.role for r in rows] == ["system", "RA", "RA", "system", "MD"]
        assert rows[1].actor == "ra1" and rows[0].model_version == "unet-resnet18-abc"
        assert engine.replay_image(session, image) == "verified"
        assert engine.replay_all(session) == {"verified": 1}


def test_illegal_event_changes_nothing(workspace):
    url = workspace.database_url
    with session_scope(url) as session:
        image = _image(session, 2)
        with pytest.raises(ProtocolError, match=r"image \d+: event 'verify' is not allowed in state 'pool'"):
            engine.move(session, image, "verify", actor="md1", role="MD")
        assert image.state == "pool"
        assert session.scalars(select(Transition)).all() == []


def test_an_event_by_a_role_it_does_not_admit_changes_nothing(workspace):
    with session_scope(workspace.database_url) as session:
        image = _image(session, 4)
        engine.move(session, image, "predict", actor="system", role="system")
        engine.move(session, image, "doubt", actor="ra1@x", role="RA")
        with pytest.raises(ProtocolError, match=r"image \d+ \(unsure\): ra1@x as RA may not cause 'advise'; "
                                                r"only MD may"):
            engine.move(session, image, "advise", actor="ra1@x", role="RA")
        assert image.state == "unsure"
        for role, event in (("system", "advise"), ("MD", "reopen"), ("RA", "reopen")):
            with pytest.raises(ProtocolError, match=f"as {role} may not cause '{event}'"):
                engine.move(session, image, event, actor="x", role=role)
        assert [r.event for r in engine.history(session, image.id)] == ["predict", "doubt"]


def test_replay_catches_a_state_column_that_disagrees(workspace):
    with session_scope(workspace.database_url) as session:
        image = _image(session, 3)
        engine.move(session, image, "predict", actor="system", role="system")
        image.state = "accepted"  # changed behind the engine's back
        with pytest.raises(ProtocolError, match="state column says 'accepted', history replays to 'predicted'"):
            engine.replay_image(session, image)
