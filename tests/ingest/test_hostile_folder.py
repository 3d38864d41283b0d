"""`annotator data import --layout folder` on a folder an attacker filled: links that loop, dangle or lead
out, a folder named like an image, a name that is not UTF-8, empty, truncated and text files, DICOM without
pixels or with many frames, a tiny image, a declared 30000x30000 PNG, a FIFO. Each is one line naming it;
the good images (a 4000x4000 PNG, 16-bit, RGBA, palette, DICOM) import; the store stays valid."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from annotator.imaging.io import read_image

PX7 = {"bits_stored": 12, "PatientID": "PX-7", "ViewPosition": "AP"}  # a 12-in-16-bit DICOM of patient PX-7


def _png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


@pytest.fixture
def hostile_folder(tmp_path, sample_data, write_dicom, claim_png_size):
    root = tmp_path / "col"
    d = root / "normal"
    (d / "dicom").mkdir(parents=True)
    sources = sorted((sample_data / "images" / "normal").glob("*.jpg"))[:8]
    gray = [read_image(p) for p in sources]
    # good items
    (d / "a.jpg").write_bytes(sources[0].read_bytes())
    big = np.zeros((4000, 4000), np.uint8)
    big[1000:3000, 800:3200] = 200
    (d / "big.png").write_bytes(_png(big))  # a valid 16 Mpx image of a few KB
    (d / "deep16.png").write_bytes(_png(gray[1].astype(np.uint16) * 257))
    (d / "rgba.png").write_bytes(_png(np.dstack([gray[2]] * 3 + [np.full_like(gray[2], 255)])))
    PILImage.fromarray(gray[3]).convert("P").save(d / "palette.png")
    write_dicom(d / "dicom" / "IM1.dcm", gray[4].astype(np.uint16) * 16, **PX7)
    cv2.imwrite(str(d / "float.tif"), gray[5].astype(np.float32) / 255)  # a float TIFF: stretched like 16-bit
    good = ["a.jpg", "big.png", "deep16.png", "rgba.png", "palette.png", "dicom/IM1.dcm", "float.tif"]
    # bad items, each with the words its failure line must hold
    os.symlink("loop.png", d / "loop.png")
    os.symlink("pong.png", d / "ping.png")
    os.symlink("ping.png", d / "pong.png")
    os.symlink("nowhere.png", d / "dangling.png")
    os.symlink(sources[5], d / "escape.jpg")
    (d / "folder.png").mkdir()
    (d / "zero.png").write_bytes(b"")
    png = _png(gray[6])
    (d / "trunc.png").write_bytes(png[: len(png) // 2])
    (d / "trunc.jpg").write_bytes(sources[6].read_bytes()[:500])
    (d / "text.jpg").write_text("patient list, not an image\n")
    write_dicom(d / "whole.dcm", gray[7].astype(np.uint16), **PX7)
    (d / "trunc.dcm").write_bytes((d / "whole.dcm").read_bytes()[:2000])
    (d / "whole.dcm").unlink()
    write_dicom(d / "nopixels.dcm", None)
    write_dicom(d / "frames.dcm", gray[7][:100, :100].astype(np.uint16), frames=3, **PX7)
    (d / "tiny.png").write_bytes(_png(gray[7][:32, :32]))
    (d / "bomb.png").write_bytes(claim_png_size(_png(np.zeros((64, 64), np.uint8)), 30000, 30000))
    os.mkfifo(d / "fifo.png")
    (d / "[red]markup.png").write_bytes(b"")
    with open(os.fsencode(d) + b"/caf\xe9.png", "wb") as fh:  # a name in Latin-1 bytes
        fh.write(_png(gray[5]))
    (d / "new\nline.png").write_bytes(_png(gray[6]))  # a newline would split the report's lines
    (d / "locked.png").write_bytes(_png(gray[6][:90]))
    (d / "locked.png").chmod(0)  # root reads it all the same: refused for what its mode says
    (d / "closed").mkdir()
    (d / "closed" / "inside.png").write_bytes(_png(gray[6][:80]))
    (d / "closed").chmod(0)
    bad = {
        "loop.png": "symbolic link loop", "ping.png": "symbolic link loop", "pong.png": "symbolic link loop",
        "dangling.png": "dangling symbolic link", "escape.jpg": "escapes the import root",
        "folder.png": "is a folder", "zero.png": "empty file", "trunc.png": "truncated PNG",
        "trunc.jpg": "truncated JPEG", "text.jpg": "not a readable image", "trunc.dcm": "DICOM",
        "nopixels.dcm": "no pixel data", "frames.dcm": "multi-frame DICOM \\(3 frames\\)",
        "tiny.png": "smaller than 64 px", "bomb.png": "declares 30000x30000 = 900.0 Mpx, over the cap of 50 Mpx",
        "fifo.png": "not a regular file", "[red]markup.png": "empty file",
        "caf\\xe9.png": "file name is not valid UTF-8",
        "new\\x0aline.png": "file name holds control characters",
        "locked.png": "not readable \\(permissions 000\\)", "closed": "folder cannot be listed",
    }
    return root, {f"normal/{k}": v for k, v in bad.items()}, [f"normal/{g}" for g in good]


def _failed_lines(stdout: str) -> dict[str, str]:
    lines = [line[len("failed: "):] for line in stdout.splitlines() if line.startswith("failed: ")]
    out = {}
    for line in lines:
        name, _, reason = line.partition(": ")
        out[name] = reason
    return out


def test_each_hostile_item_is_one_line_and_the_rest_imports(tmp_path, hostile_folder, cli):
    root, bad, good = hostile_folder
    ws = tmp_path / "ws"
    result = cli("-w", ws, "data", "import", root, "--layout", "folder")
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    failed = _failed_lines(result.stdout)
    assert set(failed) == set(bad), set(failed) ^ set(bad)
    for name, words in bad.items():
        import re

        assert re.search(words, failed[name]), (name, failed[name])
    assert f"partial import: {len(bad)} item(s) failed; the rest was imported ({len(good)} in the store)" \
        in result.stderr
    status = json.loads(cli("-w", ws, "status", "--json").stdout)
    assert status["images"] == len(good) and status["by_class"] == {"normal": len(good)}
    validate = cli("-w", ws, "data", "validate")
    assert validate.exit_code == 0 and f"checked {len(good)} images and 0 masks: all good" in validate.stdout
    again = cli("-w", ws, "data", "import", root, "--layout", "folder", "--json")
    summary = json.loads(again.stdout)
    assert again.exit_code == 3 and (summary["images_added"], summary["images_known"]) == (0, len(good))
    assert json.loads(cli("-w", ws, "status", "--json").stdout)["images"] == len(good)


def test_pixel_cap_and_minimum_side_are_settings(tmp_path, hostile_folder, cli, monkeypatch):
    root, _, good = hostile_folder
    monkeypatch.setenv("ANNOTATOR_MAX_IMAGE_PIXELS", "10000000")  # 10 Mpx: the 4000x4000 image is over it
    monkeypatch.setenv("ANNOTATOR_MIN_IMAGE_SIDE_PX", "16")  # the 32x32 one is not under this
    result = cli("-w", tmp_path / "ws", "data", "import", root, "--layout", "folder", "--json")
    failures = dict(json.loads(result.stdout)["failures"])
    assert "over the cap of 10 Mpx" in failures["normal/big.png"]
    assert "normal/tiny.png" not in failures


def test_every_item_bad_or_nothing_found_exits_1(tmp_path, cli):
    root = tmp_path / "col"
    root.mkdir()
    empty = cli("-w", tmp_path / "ws", "data", "import", root, "--layout", "folder")
    assert empty.exit_code == 1 and "nothing imported: no image found under" in empty.stderr
    (root / "zero.png").write_bytes(b"")
    os.symlink("loop.png", root / "loop.png")
    result = cli("-w", tmp_path / "ws", "data", "import", root, "--layout", "folder")
    assert result.exit_code == 1 and "nothing imported: all 2 item(s) failed" in result.stderr
    assert json.loads(cli("-w", tmp_path / "ws", "status", "--json").stdout)["images"] == 0


def test_unknown_class_option_is_refused_before_anything_is_written(tmp_path, cli, sample_data):
    root = tmp_path / "col"
    root.mkdir()
    result = cli("-w", tmp_path / "ws", "data", "import", root, "--layout", "folder", "--class", "alien")
    assert result.exit_code == 1 and "unknown class 'alien'; valid: covid, mers, non_covid_pneumonia" in result.stderr
    assert not (tmp_path / "ws").exists()


def test_folders_nested_deeper_than_the_recursion_limit(tmp_path):
    """1200 nested folders (shutil and pathlib's recursive walkers give up at ~1000): listed all the same."""
    import subprocess

    from annotator.ingest.importer import list_items

    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(1200):
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("x.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)
    try:
        (item,) = list_items(root, "folder")
        assert item.name == "a/" * 1200 + "x.png" and item.cls == "a"
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)  # pytest's own clean-up would recurse too deep


def test_a_workspace_that_cannot_be_made_is_one_line(tmp_path, sample_data, cli):
    (tmp_path / "file").write_text("a file where the workspace should go")
    root = tmp_path / "col"
    root.mkdir()
    (root / "a.jpg").write_bytes(next((sample_data / "images" / "normal").glob("*.jpg")).read_bytes())
    result = cli("-w", tmp_path / "file" / "ws", "data", "import", root, "--layout", "folder")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and "file/ws" in result.stderr and "Not a directory" in result.stderr
