"""Build a network from a ModelSpec through segmentation-models-pytorch; load a local weights file."""

from __future__ import annotations

import logging
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from annotator.errors import ModelError
from annotator.segmentation.registry import ARCHITECTURES, ModelSpec

log = logging.getLogger(__name__)


def build_model(spec: ModelSpec, weights_path: Path | str | None = None) -> nn.Module:
    """A freshly initialised network (``encoder_weights=None``: nothing is downloaded).

    ``weights_path``: a local pretrained file (a state dict, or a dict holding one under 'state_dict' /
    'model'), either of the encoder alone or of the whole network. A file that does not fit is a
    ModelError naming the first mismatching tensors.
    """
    cls = getattr(smp, ARCHITECTURES[spec.arch][0])
    kwargs: dict = {"encoder_name": spec.encoder, "encoder_weights": None, "in_channels": spec.in_channels,
                    "classes": spec.classes}
    if spec.decoder_channels is not None:
        if spec.arch == "fpn":
            kwargs["decoder_pyramid_channels"] = spec.decoder_channels[0]
            kwargs["decoder_segmentation_channels"] = spec.decoder_channels[-1]
        else:
            kwargs["decoder_channels"] = tuple(spec.decoder_channels)
    model = cls(**kwargs)
    if weights_path is not None:
        load_weights(model, spec, Path(weights_path))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def spec_parameters(spec: ModelSpec) -> int:
    """Trainable parameters of a spec, counted on the meta device (no memory, no init time)."""
    with torch.device("meta"):
        return count_parameters(build_model(spec))


def _state_dict_of(obj) -> dict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise ModelError("weights file holds no state dict (expected tensors, or one under 'state_dict'/'model')")


def load_weights(model: nn.Module, spec: ModelSpec, path: Path) -> None:
    """Load a local pretrained file into the encoder (or the whole network). RGB first convolutions are
    summed over their colour channels to fit a grayscale input, as smp does for pretrained weights."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelError(f"weights file {path} does not exist") from exc
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ModelError(f"weights file {path} is not a readable torch file ({exc})") from exc
    state = _state_dict_of(obj)
    whole = any(k.startswith("encoder.") for k in state)
    target = model if whole else model.encoder
    own = target.state_dict()
    fitted, bad = {}, []
    for key, tensor in state.items():
        if key not in own:
            continue
        want = own[key]
        if tensor.shape != want.shape and tensor.ndim == 4 and tensor.shape[1] == 3 and want.shape[1] == 1:
            tensor = tensor.sum(dim=1, keepdim=True)
        if tensor.shape != want.shape:
            bad.append(f"{key}: file {tuple(tensor.shape)} vs {spec.name} {tuple(want.shape)}")
            continue
        fitted[key] = tensor
    if bad or len(fitted) < 0.9 * len([k for k in own if not k.endswith("num_batches_tracked")]):
        missing = [k for k in own if k not in fitted and not k.endswith("num_batches_tracked")]
        detail = "; ".join(bad[:3]) or f"{len(missing)} tensors missing, e.g. {', '.join(missing[:3])}"
        raise ModelError(f"weights file {path} does not fit the {spec.encoder} encoder of {spec.name}: {detail}")
    target.load_state_dict(fitted, strict=False)
    log.info("loaded %d tensors from %s into %s", len(fitted), path, "network" if whole else "encoder")
