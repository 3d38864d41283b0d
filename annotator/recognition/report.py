"""The one-page PNG report of one analysed CXR (``annotator predict --report DIR``). matplotlib, no torch."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from annotator.evaluation.plots import _pyplot

LUNG_RGB = (0, 200, 0)
INFECTION_RGB = (230, 20, 20)


def mask_overlay(image: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int], alpha: float = 0.4) -> np.ndarray:
    """RGB uint8: the CXR with the mask tinted."""
    out = np.repeat(image[:, :, None], 3, axis=2).astype(np.float32)
    sel = np.asarray(mask) > 0
    out[sel] = (1 - alpha) * out[sel] + alpha * np.asarray(rgb, dtype=np.float32)
    return out.astype(np.uint8)


def saliency_overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8: a saliency map (0..1, any size; jet colours) over a grayscale CXR, at the CXR's size."""
    sal = cv2.resize(np.asarray(saliency, dtype=np.float32), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(sal * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    gray = np.repeat(image[:, :, None], 3, axis=2).astype(np.float32)
    return np.clip((1 - alpha) * gray + alpha * heat, 0, 255).astype(np.uint8)


def safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem) or "image"


def write_report(analysis, out_dir: Path) -> Path:
    """``<out_dir>/<stem>.report.png``: CXR, lungs, infection, Score-CAM, class probabilities, summary."""
    plt = _pyplot()
    data = analysis.to_dict()
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.5), dpi=100)
    img = analysis.image
    panels = [
        (img, "chest X-ray", "gray"),
        (mask_overlay(img, analysis.lung_mask, LUNG_RGB), "lung mask", None),
        (mask_overlay(img, analysis.infection_mask, INFECTION_RGB), f"infection: {100 * data['infected_share']:.1f}% of lungs", None),
    ]
    if analysis.saliency is not None:
        panels.append((saliency_overlay(img, analysis.saliency), f"Score-CAM ({analysis.saliency_scheme})", None))
    for ax, (pixels, title, cmap) in zip(axes.flat, panels, strict=False):
        ax.imshow(pixels, cmap=cmap)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    if analysis.saliency is None:
        axes[1, 0].axis("off")
        axes[1, 0].text(0.5, 0.5, "no classifier loaded", ha="center", va="center")
    ax = axes[1, 1]
    if analysis.probabilities:
        labels, values = [], []
        for scheme, probs in analysis.probabilities.items():
            for cls, p in probs.items():
                labels.append(f"{cls}\n({scheme})")
                values.append(p)
        ax.barh(range(len(values)), values, color="tab:blue")
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title("class probabilities", fontsize=10)
    else:
        ax.axis("off")
    ax = axes[1, 2]
    ax.axis("off")
    lungs, covid19 = data["lungs"], data["covid19"]
    lines = [
        f"image: {Path(data['image']).name}",
        f"COVID-19 (infection detected): {'POSITIVE' if covid19['detected'] else 'negative'}"
        f" (p = {covid19['probability']:.2f})",
        f"infected share of lungs: {100 * data['infected_share']:.2f}%",
        f"  patient's right lung: {100 * lungs['right']['infected_share']:.2f}%",
        f"  patient's left lung: {100 * lungs['left']['infected_share']:.2f}%",
        f"severity grade: {data['severity']}",
    ]
    for scheme, c in data["classification"].items():
        lines.append(f"{scheme}: {c['predicted']}")
    lines += ["", "models:"] + [f"  {k}: {v}" for k, v in data["model_versions"].items()]
    lines += ["", "Research software, not a medical device."]
    ax.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=8, family="monospace", wrap=True)
    fig.suptitle(f"COVID-19 recognition report: {Path(data['image']).name}", fontsize=12)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{safe_stem(data['image'])}.report.png"
    fig.savefig(path)
    plt.close(fig)
    return path
