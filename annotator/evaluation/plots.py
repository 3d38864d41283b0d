"""PNG plots: ROC curves, confusion matrices, training curves. matplotlib with the Agg backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int | None = None) -> Path:
    """Lay the figure out, write it to ``path`` (its folder made), free it; returns the path."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **({"dpi": dpi} if dpi else {}))
    _pyplot().close(fig)
    return path


def plot_roc(curves: dict[str, dict], path: Path, title: str) -> Path:
    """curves: evaluation.roc.one_vs_rest output."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for name, c in curves.items():
        if np.isnan(c["auc"]):
            continue
        ax.plot(c["fpr"], c["tpr"], label=f"{name} (AUC {c['auc']:.3f}, n={c['n']})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return save_png(fig, path)


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> Path:
    """Counts, rows true and columns predicted, with the row share in each cell."""
    plt = _pyplot()
    cm = np.asarray(confusion)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.6 * k + 2, 1.4 * k + 1.6), dpi=100)
    ax.imshow(cm, cmap="Blues")
    rows = cm.sum(1, keepdims=True)
    for i in range(k):
        for j in range(k):
            share = cm[i, j] / rows[i, 0] if rows[i, 0] else 0.0
            color = "white" if cm[i, j] > cm.max() / 2 else "black"
            ax.text(j, i, f"{cm[i, j]}\n{100 * share:.1f}%", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} (n={int(cm.sum())})")
    return save_png(fig, path)


def plot_scatter(x: Sequence[float], y: Sequence[float], path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.scatter(x, y, s=12)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return save_png(fig, path)
