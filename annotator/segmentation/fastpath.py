"""The fast CPU paths: ONNX export (cached beside the checkpoint, keyed by model_version) and its
ONNX Runtime session. (Each fast backend's agreement with fp32 is measured in ``predict``, which builds
the predictors: this module stays below it, so the two do not import each other.)"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from annotator.errors import ModelError
from annotator.segmentation.checkpoint import Checkpoint

log = logging.getLogger(__name__)


def onnx_path_for(ckpt: Checkpoint) -> Path:
    if ckpt.path is None:
        raise ModelError("an in-memory checkpoint has no place for its ONNX file; save it first")
    return ckpt.path.with_name(f"{ckpt.model_version}.onnx")


def export_onnx(model: torch.nn.Module, size_px: int, path: Path, in_channels: int = 1) -> Path:
    """Export with a dynamic batch axis; written atomically."""
    model = model.eval().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, in_channels, size_px, size_px)
    tmp = path.with_suffix(".tmp.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: no onnxscript needed
        torch.onnx.export(model, dummy, str(tmp), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    tmp.replace(path)
    return path


def onnx_session_for(ckpt: Checkpoint, model: torch.nn.Module, threads: int | None = None):
    """An ONNX Runtime session for the checkpoint, exporting the graph the first time."""
    import onnxruntime as ort

    path = onnx_path_for(ckpt)
    if not path.is_file():
        export_onnx(model, ckpt.spec.input_size_px, path, ckpt.spec.in_channels)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a bad file
        raise ModelError(f"ONNX file {path} cannot be loaded ({exc}); delete it to export again") from exc
