"""`annotator model table` and `evaluate` on an external collection, through the CLI."""

from __future__ import annotations

import json
import tempfile

from typer.testing import CliRunner

from annotator.cli.main import app


def test_table_times_each_backend_with_parameters(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = CliRunner().invoke(app, ["-w", str(tmp_path / "none"), "model", "table", "--model", "fpn-resnet18",
                                   "--backend", "eager", "--backend", "onnx", "--size-px", "64", "--repeats", "2",
                                   "--json"])
    assert out.exit_code == 0, out.output
    row = json.loads(out.output[out.output.index("["):])[0]
    assert row["network"] == "FPN-ResNet18" and row["params_m"] == 13.04 and row["input_px"] == 64
    assert row["eager_ms"] > 0 and row["onnx_ms"] > 0
    assert list(scratch.glob("annotator-*")) == []  # the untrained checkpoint and its ONNX export are removed


def test_evaluate_a_checkpoint_on_an_external_collection(tiny_run, sample_data, tmp_path):
    result, _ = tiny_run
    out = CliRunner().invoke(app, ["-w", str(tmp_path / "none"), "model", "evaluate", "--model",
                                   str(result.checkpoint_path), "--data", str(sample_data), "--layout", "manifest",
                                   "--dataset", "COVID-QU-Ex", "--backend", "eager", "--json"])
    assert out.exit_code == 0, out.output
    scores = json.loads(out.output[out.output.index("{"):])
    assert scores["n"] == 12 and scores["model_version"] == result.model_version
    assert 0 < scores["iou"] < scores["dsc"] < 1 and 0 < scores["accuracy"] < 1
    missing = CliRunner().invoke(app, ["-w", str(tmp_path / "none"), "model", "evaluate", "--model", "working"])
    assert missing.exit_code == 1 and "not a checkpoint file" in missing.output
