"""Prediction: a ``Predictor`` loads a checkpoint once and predicts batches of images of any size.

Backends: ``eager`` (fp32, the reference), ``bf16`` (bf16 autocast + channels_last; fp16 on a GPU without
bf16) and ``onnx`` (ONNX Runtime on the CPU, on an exported graph cached beside the checkpoint). ``device``
is the setting (``auto``: CUDA when present); checkpoints load on any device. A fast backend is used only when it was
verified against fp32 (mean mask Dice >= 0.995) on real images: at training time (stored in the
checkpoint's metrics) or on ``verify_images`` given here; otherwise it is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from annotator.device import resolve_device
from annotator.errors import ModelError, UnknownNameError
from annotator.evaluation.metrics import dice
from annotator.segmentation import transform
from annotator.segmentation.checkpoint import Checkpoint, load_checkpoint, load_network
from annotator.segmentation.fastpath import onnx_session_for
from annotator.segmentation.postprocess import postprocess
from annotator.segmentation.registry import ModelSpec

log = logging.getLogger(__name__)

BACKENDS = ("eager", "bf16", "onnx")
MIN_FAST_PATH_DICE = 0.995


class FastPathRefused(ModelError):
    """A fast backend disagrees with fp32 (or was never checked) for this checkpoint."""


class Predictor:
    """A loaded network. ``predict`` gives post-processed {0,255} masks at each image's own size."""

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, model_version: str, backend: str = "eager",
                 device: str = "auto", batch_size: int = 8, onnx_session=None, checkpoint: Checkpoint | None = None,
                 threshold: float = 0.5, min_region_share: float = 0.05):
        if backend not in BACKENDS:
            raise UnknownNameError("prediction backend", backend, BACKENDS)
        if backend == "onnx" and onnx_session is None:
            raise ModelError("the onnx backend needs an ONNX Runtime session; use Predictor.from_checkpoint")
        self.spec = spec
        self.model_version = model_version
        self.backend = backend
        self.device = torch.device(resolve_device(device) if backend != "onnx" else "cpu")
        self.batch_size = batch_size
        self.checkpoint = checkpoint
        self.threshold = threshold
        self.min_region_share = min_region_share
        self.fast_path_dice: float | None = None
        self._onnx = onnx_session
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: cuDNN picks its fastest kernels once
        if backend == "bf16":
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_checkpoint(cls, path: Path | str, backend: str = "eager", device: str = "auto", *,
                        batch_size: int = 8, verify_images: Sequence[np.ndarray] | None = None,
                        min_dice: float = MIN_FAST_PATH_DICE, on_refuse: str = "raise",
                        threads: int | None = None) -> Predictor:
        """Load once. A fast ``backend`` is checked against fp32 on ``verify_images`` if given, else by the
        agreement stored at training time; a failing or unchecked one raises FastPathRefused, or with
        ``on_refuse="eager"`` falls back to fp32 with a warning."""
        if backend not in BACKENDS:
            raise UnknownNameError("prediction backend", backend, BACKENDS)
        if on_refuse not in ("raise", "eager"):
            raise UnknownNameError("on_refuse policy", on_refuse, ("raise", "eager"))
        if threads:
            torch.set_num_threads(int(threads))
        ckpt = load_checkpoint(path)
        model = load_network(ckpt)
        eager = cls(model, ckpt.spec, ckpt.model_version, "eager", device, batch_size, checkpoint=ckpt)
        if backend == "eager":
            return eager
        try:
            fast = cls._fast(ckpt, model, backend, device, batch_size, threads)
            if verify_images is not None and len(verify_images):
                reference = eager.predict(list(verify_images))
                got = fast.predict(list(verify_images))
                agreement = float(np.mean([dice(a, b) for a, b in zip(got, reference)]))
            else:
                agreement = (ckpt.metrics.get("fast_path", {}).get(backend) or {}).get("dice_vs_fp32")
                if agreement is None:
                    raise FastPathRefused(f"backend {backend!r} was never verified for {ckpt.model_version}; "
                                          "pass verify_images (real images) or use backend 'eager'")
            fast.fast_path_dice = agreement
            if agreement < min_dice:
                raise FastPathRefused(f"backend {backend!r} agrees with fp32 at mean mask Dice {agreement:.4f} "
                                      f"< {min_dice} for {ckpt.model_version}; use backend 'eager'")
            return fast
        except FastPathRefused as exc:
            if on_refuse == "raise":
                raise
            log.warning("%s; predicting with eager fp32", exc)
            return cls(load_network(ckpt), ckpt.spec, ckpt.model_version, "eager", device, batch_size,
                       checkpoint=ckpt)

    @classmethod
    def _fast(cls, ckpt: Checkpoint, model, backend: str, device: str, batch_size: int, threads: int | None):
        if backend == "bf16":
            return cls(load_network(ckpt), ckpt.spec, ckpt.model_version, "bf16", device, batch_size, checkpoint=ckpt)
        model = load_network(ckpt)  # on the CPU, where the graph is exported (the eager one may be on a GPU)
        session = onnx_session_for(ckpt, model, threads=threads)
        return cls(model, ckpt.spec, ckpt.model_version, "onnx", device, batch_size, onnx_session=session,
                   checkpoint=ckpt)

    # -- prediction ---------------------------------------------------------------------------------
    def _check_image(self, i: int, image: np.ndarray) -> None:
        if not isinstance(image, np.ndarray) or image.ndim != 2:
            shape = getattr(image, "shape", None)
            raise ModelError(f"image {i}: expected an HxW grayscale uint8 array, got shape {shape}")
        if min(image.shape) < transform.MIN_IMAGE_PX or max(image.shape) < self.spec.input_size_px // 2:
            raise ModelError(f"image {i} is {image.shape[1]}x{image.shape[0]} px, too small for the "
                             f"{self.spec.input_size_px} px input of {self.spec.name} (need a side >= "
                             f"{self.spec.input_size_px // 2} px and both >= {transform.MIN_IMAGE_PX} px)")

    def forward_batch(self, batch: np.ndarray) -> np.ndarray:
        """N x S x S standardised float32 -> N x S x S lung probability (softmax channel 1)."""
        if self.backend == "onnx":
            logits = self._onnx.run(None, {"image": batch[:, None].astype(np.float32)})[0]
            logits = torch.from_numpy(logits)
        else:
            x = torch.from_numpy(batch).unsqueeze(1)
            if self.device.type == "cuda":
                x = x.pin_memory().to(self.device, non_blocking=True)
            with torch.inference_mode():
                if self.backend == "bf16":
                    x = x.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(self.device.type, dtype=self._half_dtype()):
                        logits = self.model(x)
                else:
                    logits = self.model(x)
            logits = logits.float().cpu()
        if logits.shape[1] == 1:
            return torch.sigmoid(logits[:, 0]).numpy()
        return logits.softmax(dim=1)[:, 1].numpy()

    def _half_dtype(self) -> torch.dtype:
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16

    def predict_proba(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """HxW float32 lung probabilities in 0..1, at each image's own size."""
        images = list(images)
        for i, image in enumerate(images):
            self._check_image(i, image)
        size = self.spec.input_size_px
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch = transform.standardize(np.stack([transform.resize_image(img, size) for img in chunk]))
            probs = self.forward_batch(batch)
            out.extend(np.clip(transform.resize_probability(p, img.shape[:2]), 0.0, 1.0)
                       for p, img in zip(probs, chunk))
        return out

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """HxW uint8 {0,255} post-processed masks, at each image's own size."""
        return [postprocess(p, self.threshold, self.min_region_share) for p in self.predict_proba(images)]


def measure_fast_paths(ckpt: Checkpoint, model: torch.nn.Module, images: list[np.ndarray],
                       reference_masks: list[np.ndarray]) -> dict:
    """Mean mask Dice of each fast backend against fp32 on ``images`` and its ms per image, on the CPU."""
    out: dict = {}
    for backend in ("bf16", "onnx"):
        try:
            if backend == "onnx":
                fast = Predictor(model, ckpt.spec, ckpt.model_version, "onnx",
                                 onnx_session=onnx_session_for(ckpt, model), checkpoint=ckpt)
            else:
                fast = Predictor(load_network(ckpt), ckpt.spec, ckpt.model_version, "bf16", "cpu", checkpoint=ckpt)
            start = time.perf_counter()
            got = fast.predict(images)
            ms = (time.perf_counter() - start) * 1000 / max(len(images), 1)
            agreement = float(np.mean([dice(a, b) for a, b in zip(got, reference_masks)]))
            out[backend] = {"dice_vs_fp32": agreement, "n": len(images), "ms_per_image": round(ms, 1)}
        except ModelError as exc:
            log.warning("fast path %s unavailable: %s", backend, exc)
            out[backend] = {"error": str(exc)}
    return out
