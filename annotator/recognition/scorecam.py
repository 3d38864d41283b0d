"""Score-CAM (Wang et al. 2020; the thesis' eq. 6-7) for any classifier in the registry. A heavy leaf.

For the class c and the activation maps A_k of the last convolutional block:
  H_k = normalise(upsample(A_k))           (each map scaled to 0..1 at the input's size)
  S_k = f_c(X * H_k)                       (the class-c logit of the input masked by H_k; eq. 6)
  alpha_k = exp(S_k) / sum_j exp(S_j)      (softmax over the maps, as pytorch-grad-cam's ScoreCAM does)
  L_c = ReLU(sum_k alpha_k A_k)            (eq. 7), upsampled and scaled to 0..1.
The softmax over the maps makes the baseline term f_c(X_b) of the original paper cancel out, and keeps
the map non-empty for a weakly trained network whose masked inputs all score below a black image.
``max_maps`` keeps only the maps with the largest mean activation (DenseNet-201 has 1920): a CPU budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.inference_mode()
def score_cam(
    model: nn.Module,
    x: torch.Tensor,
    layer: nn.Module,
    class_index: int | None = None,
    max_maps: int | None = 128,
    batch_size: int = 32,
) -> tuple[np.ndarray, int]:
    """Saliency map (input-sized HxW float32 in 0..1) of one image ``x`` (1x3xHxW in 0..1), and the class."""
    model.eval()
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    c = int(logits.argmax(1)) if class_index is None else int(class_index)
    acts = captured[0][0]  # K x h x w
    if max_maps is not None and acts.shape[0] > max_maps:
        keep = acts.mean(dim=(1, 2)).topk(max_maps).indices
        acts = acts[keep]
    h, w = x.shape[-2:]
    maps = F.interpolate(acts[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    lo = maps.flatten(1).min(1).values[:, None, None]
    hi = maps.flatten(1).max(1).values[:, None, None]
    valid = (hi - lo).flatten() > 1e-8
    masks = torch.where(valid[:, None, None], (maps - lo) / (hi - lo).clamp_min(1e-8), torch.zeros_like(maps))
    scores = torch.empty(masks.shape[0])
    for b in range(0, masks.shape[0], batch_size):
        chunk = masks[b : b + batch_size]
        scores[b : b + batch_size] = model(x * chunk[:, None])[:, c].float()
    scores[~valid] = float("-inf")  # a constant map carries no location
    weights = torch.softmax(scores, 0) if bool(valid.any()) else torch.zeros_like(scores)
    cam = F.relu((weights[:, None, None] * acts).sum(0))
    cam = F.interpolate(cam[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else cam
    return cam.numpy().astype(np.float32), c


def saliency_for(classifier, image: np.ndarray, lung_mask: np.ndarray | None = None, class_index: int | None = None, max_maps: int | None = 128) -> tuple[np.ndarray, int]:
    """Score-CAM of a ``classifier.Classifier`` on a raw CXR (prepared as the classifier was trained)."""
    arr = classifier.prepare(image, lung_mask)
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    return score_cam(classifier.model, x, classifier.target_layer(), class_index, max_maps)


def saliency_batch(classifier, images: Sequence[np.ndarray], lung_masks: Sequence[np.ndarray | None], max_maps: int | None = 128) -> list[np.ndarray]:
    return [saliency_for(classifier, i, m, None, max_maps)[0] for i, m in zip(images, lung_masks, strict=True)]
