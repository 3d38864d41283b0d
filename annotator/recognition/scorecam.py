"""Score-CAM (Wang et al. 2020; the thesis' eq. 6-7) for any classifier in the registry. A heavy leaf.

For the class c and the activation maps A_k of the last convolutional block:
  H_k = normalise(upsample(A_k))           (each map scaled to 0..1 at the input's size)
  alpha_k = f_c(X * H_k) - f_c(X_b)        (eq. 6: the class-c score's increase over the baseline X_b)
  L_c = ReLU(sum_k alpha_k A_k)            (eq. 7), upsampled and scaled to 0..1.
f_c is the class-c probability (softmax over the classes, as Wang et al. use it) and X_b the black image,
the input with every pixel masked. A map whose masked input scores below the baseline weighs negatively;
when no map raises the score the saliency is empty, which is what the network's evidence says (a weakly
trained network can show that: the report draws it as such rather than inventing a location).
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
    baseline = float(torch.softmax(model(torch.zeros_like(x)).float(), 1)[0, c])
    weights = torch.empty(masks.shape[0], device=x.device)
    for b in range(0, masks.shape[0], batch_size):
        chunk = masks[b : b + batch_size]
        weights[b : b + batch_size] = torch.softmax(model(x * chunk[:, None]).float(), 1)[:, c] - baseline
    weights[~valid] = 0.0  # a constant map carries no location
    cam = F.relu((weights[:, None, None] * acts).sum(0))
    cam = F.interpolate(cam[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else cam
    return cam.float().cpu().numpy().astype(np.float32), c


def saliency_for(classifier, image: np.ndarray, lung_mask: np.ndarray | None = None, class_index: int | None = None, max_maps: int | None = 128) -> tuple[np.ndarray, int]:
    """Score-CAM of a ``classifier.Classifier`` on a raw CXR (prepared as the classifier was trained)."""
    arr = classifier.prepare(image, lung_mask)
    device = next(classifier.model.parameters()).device  # the classifier's device (the setting's)
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None].to(device)
    return score_cam(classifier.model, x, classifier.target_layer(), class_index, max_maps)


def saliency_batch(classifier, images: Sequence[np.ndarray], lung_masks: Sequence[np.ndarray | None], max_maps: int | None = 128) -> list[np.ndarray]:
    return [saliency_for(classifier, i, m, None, max_maps)[0] for i, m in zip(images, lung_masks, strict=True)]
