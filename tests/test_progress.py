"""The progress helper: plain lines every 10% (and a heartbeat) where no terminal is, a rich bar on one,
nested bars sharing one display, nothing when disabled."""

from __future__ import annotations

import io
import re
import time

from annotator.progress import progress_bar, track


def lines_of(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_plain_lines_at_start_every_tenth_and_end():
    out = io.StringIO()
    with progress_bar("pre-labelling", total=20, stream=out, unit="images") as bar:
        for _ in range(20):
            bar.advance()
    lines = lines_of(out)
    assert len(lines) == 11  # the start, 10% .. 90%, the end
    assert all(line.startswith("[progress] pre-labelling: ") for line in lines)
    counts = [re.search(r": (\d+)/20 images \((\d+)%\)", line).groups() for line in lines]
    assert counts == [("0", "0"), *((str(2 * k), str(10 * k)) for k in range(1, 10)), ("20", "100")]
    assert "images/s" in lines[-1] and "elapsed" in lines[-1] and "left" in lines[5]


def test_big_steps_give_one_line_per_step_and_info_is_shown():
    out = io.StringIO()
    with progress_bar("training unet-resnet18 (tiny)", total=4, unit="epochs", stream=out) as bar:
        for epoch in range(1, 5):
            bar.update(completed=epoch, info=f"loss {1 / epoch:.4f}")
    lines = lines_of(out)
    assert [re.search(r"(\d+)/4 epochs", line).group(1) for line in lines] == ["0", "1", "2", "3", "4"]
    assert lines[2].endswith("; loss 0.5000") and lines[-1].endswith("; loss 0.2500")


def test_a_resumed_run_starts_where_it_was():
    out = io.StringIO()
    with progress_bar("training", total=10, completed=6, unit="epochs", stream=out) as bar:
        bar.advance()
    lines = lines_of(out)
    assert "6/10 epochs (60%)" in lines[0] and "7/10 epochs (70%)" in lines[1] and len(lines) == 3


def test_heartbeat_while_nothing_moves_and_unknown_totals():
    out = io.StringIO()
    with progress_bar("syncing ra_review", stream=out, heartbeat_s=0.05) as bar:
        bar.advance(3)
        time.sleep(0.5)
    lines = lines_of(out)
    assert len(lines) >= 4  # the start, heartbeats, the end
    assert lines[-1].startswith("[progress] syncing ra_review: 3 items") and "%" not in lines[-1]


def test_only_the_innermost_of_nested_plain_tasks_beats():
    out = io.StringIO()
    with progress_bar("six networks", total=6, stream=out, heartbeat_s=0.05):
        with progress_bar("training", total=2, stream=out, heartbeat_s=0.05):
            time.sleep(0.5)
    lines = lines_of(out)
    assert sum(line.startswith("[progress] training: 0/2") for line in lines) >= 3  # its start and beats
    assert [line for line in lines if line.startswith("[progress] six networks")][:1] == lines[:1]
    assert sum(line.startswith("[progress] six networks") for line in lines) == 2  # start and end only


def test_disabled_writes_nothing_and_track_counts(capsys):
    with progress_bar("quiet", total=5, enabled=False) as bar:
        bar.advance(5)
    assert bar.completed == 5
    assert list(track(range(3), "counting")) == [0, 1, 2]
    err = capsys.readouterr().err.splitlines()  # stderr is no terminal under pytest: plain lines
    assert err[0].startswith("[progress] counting: 0/3") and err[-1].startswith("[progress] counting: 3/3")
    assert not any("quiet" in line for line in err)


def test_nested_bars_share_one_rich_display_on_a_terminal(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the stream as a terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    with progress_bar("stage III networks", total=2, stream=out) as outer:
        for k in range(2):
            with progress_bar(f"training network {k + 1}", total=3, stream=out, unit="epochs") as inner:
                inner.advance(3)
            outer.advance()
    text = out.getvalue()
    assert "[progress]" not in text  # a bar, not plain lines
    assert "stage III networks" in text and "training network 2" in text and "2/2" in text
