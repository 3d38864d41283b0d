"""Helpers the protocol's entry points share: the Label Studio client (checked), the working predictor."""

from __future__ import annotations

from annotator.config import Settings
from annotator.errors import AnnotatorError, LabelStudioError
from annotator.labelstudio.client import LabelStudio
from annotator.model_registry import checkpoint_file, working_model


def labelstudio_client(settings: Settings):
    """A client of the workspace's Label Studio, or a clear error saying how to start it."""
    ls = LabelStudio(settings)
    if not ls.health():
        raise LabelStudioError(f"Label Studio does not answer at {settings.labelstudio_base_url}; start it with "
                               "`annotator labelstudio start` (nothing was changed)")
    return ls


def working_predictor(session, settings: Settings):
    """The working network, loaded once, on the configured fast path (falling back to fp32 if refused)."""
    from annotator.segmentation.predict import Predictor

    model = working_model(session)
    if model is None:
        raise AnnotatorError("no working network: run `annotator stage1 run` first")
    return Predictor.from_checkpoint(checkpoint_file(settings.workspace_path, model),
                                     backend=settings.predict_backend, device=settings.device, on_refuse="eager",
                                     threads=settings.torch_threads or None)
