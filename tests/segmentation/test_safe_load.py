"""Files others could write (checkpoints, resume points) are read with ``torch.load(weights_only=True)``:
a pickle that would run code is refused, and our own checkpoints, metadata included, still load."""

from __future__ import annotations

import pathlib

import pytest

torch = pytest.importorskip("torch", reason="checkpoint tests need torch (pip install -e '.[ml]')")

from annotator.errors import ModelError  # noqa: E402
from annotator.segmentation.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402


class _Payload:
    """Unpickling this (with weights_only=False) would create ``marker``: code run by loading a file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _hostile_file(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    torch.save({"format": "x", "spec": {}, "model_version": "v", "state_dict": _Payload(marker)}, path)
    return path


def test_a_hostile_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    path = _hostile_file(tmp_path / "model.pt", marker)
    with pytest.raises(ModelError, match=r"checkpoint .*model.pt is corrupt or not a torch file \(UnpicklingError"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_hostile_resume_point_is_set_aside_without_running_its_code(tmp_path):
    from annotator.segmentation.train import _load_resume_state

    marker = tmp_path / "pwned"
    assert _load_resume_state(_hostile_file(tmp_path / "last.pt", marker)) is None
    assert not marker.exists()


def test_our_checkpoints_with_their_metadata_load_under_weights_only(tmp_path):
    from annotator.segmentation.factory import build_model
    from annotator.segmentation.registry import get_spec

    spec = get_spec("unet-resnet18", 64)
    state = build_model(spec).state_dict()
    saved = save_checkpoint(tmp_path / "model.pt", spec, state, preset="tiny", train_config={"lr": 1e-3},
                            metrics={"val_dsc": 0.5, "val": {"dsc": [0.5, 0.4, 0.6]}}, history=[{"epoch": 1}])
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert (loaded.model_version, loaded.spec, loaded.metrics, loaded.history) == (
        saved.model_version, spec, {"val_dsc": 0.5, "val": {"dsc": [0.5, 0.4, 0.6]}}, [{"epoch": 1}])
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in state.items())
