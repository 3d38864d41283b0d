"""`annotator data import --layout manifest` on manifests an attacker wrote: rows without or with an unknown
class, a severity that is not a number, duplicate rows, paths out of the root or absolute, an empty file cell,
a row with too many values, a Latin-1 row, masks of the wrong size, not binary, or missing. Each bad row is
one line naming it, the good rows import; Latin-1, BOM, UTF-16 and header problems are handled as a whole."""

from __future__ import annotations

import csv
import io
import json
import re

import cv2
import numpy as np
import pytest

from annotator.imaging.io import read_mask


def _write_rows(path, header, rows, encoding="utf-8"):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding, "surrogateescape"))


@pytest.fixture
def hostile_manifest(tmp_path, sample_data, rows_where, manifest_collection):
    rows = rows_where(9, dataset="Shenzhen", lung_mask_file=True)
    root = manifest_collection(tmp_path / "col", rows)
    header = list(rows[0])
    a, b, c, d, e, f, g, h, i = rows
    mask_e = read_mask(root / e["lung_mask_file"])
    cv2.imwrite(str(root / e["lung_mask_file"]), mask_e[:, : mask_e.shape[1] // 2])  # wrong size
    cv2.imwrite(str(root / d["lung_mask_file"]), np.zeros_like(read_mask(root / d["lung_mask_file"])))
    levels = np.where(read_mask(root / f["lung_mask_file"]) > 0, 107, 100).astype(np.uint8)
    cv2.imwrite(str(root / f["lung_mask_file"]), levels)  # values {100, 107}: not binary
    bad_rows = {
        "missing class": (dict(b, **{"class": ""}), "the class column is empty; give one of covid"),
        "unknown class": (dict(i, **{"class": "alien"}), "unknown class 'alien'; valid: covid"),
        "empty mask": (d, "the lung mask is empty \\(no pixel inside\\)"),
        "severity": (dict(c, severity_geographic_mean="high"), "severity_geographic_mean 'high' is not a number"),
        "nan severity": (dict(g, severity_opacity_mean="nan"), "severity_opacity_mean 'nan' is outside 0..6"),
        "duplicate": (dict(a), "lists this file again \\(first in row 2\\); the row is ignored"),
        "passwd": (dict(a, file="../../etc/passwd"), "escapes the import root"),
        "absolute": (dict(a, file="/etc/passwd"), "is an absolute path"),
        "mask size": (e, "mask is .* but its image is"),
        "not binary": (f, r"not a binary mask \(2 levels: 100, 107\)"),
        "no mask": (dict(h, lung_mask_file="masks/lung/nowhere.png"), "lung_mask_file .*file not found"),
        "latin-1": (dict(a, file="images/normal/caf\udce9.jpg"), "is not valid UTF-8 .*save manifest.csv as UTF-8"),
    }
    ordered = [a, *(r for r, _ in bad_rows.values())]
    table = [[r.get(k, "") for k in header] for r in ordered]
    table.append([""] * len(header))  # a blank row: skipped, not a problem
    table.append(["images/x.jpg", "covid"] + [""] * (len(header) - 2) + ["one", "too", "many"])
    table.append([""] + ["covid"] + [""] * (len(header) - 2))  # no file
    _write_rows(root / "manifest.csv", header, table)
    expected = {}
    for number, (row, words) in enumerate(bad_rows.values(), start=3):
        name = row["file"].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        expected[name if name != a["file"] else f"row {number}"] = words  # the duplicate: by its row
    n = len(ordered) + 1
    expected[f"manifest.csv row {n + 2}"] = f"has {len(header) + 3} values but the header has {len(header)} columns"
    expected[f"manifest.csv row {n + 3}"] = "the file column is empty"
    return root, expected, f


def test_each_bad_row_is_one_line_and_the_rest_imports(tmp_path, hostile_manifest, cli):
    root, expected, soft = hostile_manifest
    ws = tmp_path / "ws"
    result = cli("-w", ws, "data", "import", root, "--layout", "manifest", "--json")
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    failures = summary["failures"]
    assert len(failures) == len(expected), failures
    lines = [f"{name}: {reason}" for name, reason in failures]
    for locator, words in expected.items():  # a file name, or "row N" for a row naming a good row's file
        found = [line for line in lines if line.startswith(f"{locator}: ") or f"manifest.csv {locator} " in line]
        assert any(re.search(words, line) for line in found), (locator, words, found)
    assert (summary["images_added"], summary["outcome"]) == (1, "partial")
    status = json.loads(cli("-w", ws, "status", "--json").stdout)
    assert status["images"] == 1 and status["masks"] == {"lung": 1, "infection": 0}
    assert cli("-w", ws, "data", "validate").exit_code == 0


def test_mask_threshold_reads_a_two_level_mask(tmp_path, hostile_manifest, cli, sample_data):
    root, _, soft = hostile_manifest
    ws = tmp_path / "ws"
    result = cli("-w", ws, "data", "import", root, "--layout", "manifest", "--mask-threshold", "104", "--json")
    summary = json.loads(result.stdout)
    assert soft["file"] not in dict(summary["failures"]) and summary["images_added"] == 2
    expected = read_mask(sample_data / soft["lung_mask_file"])
    stored = sorted((ws / "store" / "masks" / "lung").rglob("*.png"))
    assert any(np.array_equal(read_mask(p), expected) for p in stored)


def test_latin1_manifest_imports_its_ascii_rows(tmp_path, sample_data, rows_where, manifest_collection, cli):
    rows = rows_where(2, dataset="Montgomery", lung_mask_file=True)
    root = manifest_collection(tmp_path / "col", rows)
    header = list(rows[0])
    accented = dict(rows[1], file="images/normal/radiographie_\u00e9t\u00e9.jpg", lung_mask_file="")
    _write_rows(root / "manifest.csv", header, [[r[k] for k in header] for r in (rows[0], accented)], "latin-1")
    result = cli("-w", tmp_path / "ws", "data", "import", root, "--layout", "manifest")
    assert result.exit_code == 3
    assert "failed: images/normal/radiographie_\\xe9t\\xe9.jpg: manifest.csv row 3 is not valid UTF-8" in result.stdout
    assert json.loads(cli("-w", tmp_path / "ws", "status", "--json").stdout)["images"] == 1


def test_bom_manifest_reads_like_plain_utf8(tmp_path, rows_where, manifest_collection, cli):
    rows = rows_where(2, dataset="Montgomery", lung_mask_file=True)
    root = manifest_collection(tmp_path / "col", rows)
    (root / "manifest.csv").write_bytes(b"\xef\xbb\xbf" + (root / "manifest.csv").read_bytes())
    result = cli("-w", tmp_path / "ws", "data", "import", root, "--layout", "manifest", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["images_added"] == 2


@pytest.mark.parametrize(("content", "words"), [
    ("file,klass\nimages/a.jpg,covid\n".encode(), r"missing column\(s\) class; it needs at least file, class"),
    ("file,class\nimages/a.jpg,covid\n".encode("utf-16"), "is UTF-16; save it as UTF-8 CSV"),
    (b"file,class\nimages/a.jpg\x00,covid\n", "holds NUL bytes"),
    (b"", r"missing column\(s\) file, class.*found: no header"),
])
def test_a_manifest_that_is_no_table_stops_before_anything_is_written(tmp_path, cli, content, words):
    root = tmp_path / "col"
    root.mkdir()
    (root / "manifest.csv").write_bytes(content)
    result = cli("-w", tmp_path / "ws", "data", "import", root, "--layout", "manifest")
    assert result.exit_code == 1 and re.search(words, result.stderr.replace("\n", " ")), result.stderr
    assert not (tmp_path / "ws").exists()


def test_cells_with_spaces_around_them_read_as_without(tmp_path, rows_where, manifest_collection, cli):
    rows = rows_where(2, dataset="Montgomery", lung_mask_file=True)
    root = manifest_collection(tmp_path / "col", rows)
    lines = (root / "manifest.csv").read_text().splitlines()
    (root / "manifest.csv").write_text("\n".join(", ".join(line.split(",")) for line in lines) + "\n")
    result = cli("-w", tmp_path / "ws", "data", "import", root, "--layout", "manifest", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["images_added"] == 2
