"""Step: Score-CAM (eq. 6-7) for every scheme, network and input mode: one PNG each with a row per class
and, per class, correctly classified and misclassified test images (the map of the predicted class, made
by the model that scored that image: a fold's model in Study I's cross-validation)."""

from __future__ import annotations

from pathlib import Path


from annotator.evaluation import plots
from annotator.recognition.classifier import Classifier
from annotator.recognition.report import saliency_overlay
from annotator.recognition.scorecam import saliency_for
from annotator.recognition.steps.classification import Classifiers, Evaluation
from annotator.recognition.steps.context import RunContext
from annotator.recognition.steps.lung import LungNetwork


def _examples(ev: Evaluation, cls: int, correct: bool, k: int) -> list[int]:
    predicted = ev.proba.argmax(1)
    return [i for i in range(len(ev.items)) if ev.labels[i] == cls and (predicted[i] == cls) == correct][:k]


def draw_saliency(ctx: RunContext, lungs: LungNetwork, classifiers: Classifiers) -> None:
    config = ctx.config
    plt = plots._pyplot()
    k = max(1, config.scorecam_examples)
    loaded: dict[Path, Classifier] = {}
    for ev in classifiers.evaluations:
        names = ev.class_names
        fig, axes = plt.subplots(len(names), 2 * k, figsize=(3.2 * 2 * k, 3.4 * len(names)), dpi=90, squeeze=False)
        predicted = ev.proba.argmax(1)
        for row, cls in enumerate(names):
            for col_block, correct in enumerate((True, False)):
                picked = _examples(ev, row, correct, k)
                for j in range(k):
                    ax = axes[row, col_block * k + j]
                    ax.axis("off")
                    if j >= len(picked):
                        ax.set_title(f"{cls}: no {'correct' if correct else 'misclassified'} image", fontsize=7)
                        continue
                    i = picked[j]
                    s = ev.items[i]
                    path = ev.checkpoints[i]
                    clf = loaded.get(path) or loaded.setdefault(path, Classifier.from_checkpoint(path, ctx.device))
                    image = ctx.pixels(s)
                    mask = lungs.mask(s) if ev.config.input_mode == "segmented" else None
                    sal, c = saliency_for(clf, image, mask, int(predicted[i]), config.scorecam_max_maps)
                    ax.imshow(saliency_overlay(image, sal))
                    ax.set_title(f"{'correct' if correct else 'MISCLASSIFIED'}: true {cls}\npredicted "
                                 f"{names[c]} (p={ev.proba[i, c]:.2f})", fontsize=7)
        fig.suptitle(f"Score-CAM, {ev.scheme}, {ev.config.key}", fontsize=10)
        fig.tight_layout()
        out = ctx.report.report_path / f"scorecam_{ev.scheme}_{ev.config.arch}_{ev.config.input_mode}.png"
        fig.savefig(out)
        plt.close(fig)
        ctx.report.plot(out)
        loaded.clear()
    ctx.report.results["scorecam"] = {"examples_per_class_and_outcome": k, "max_maps": config.scorecam_max_maps,
                                      "figures": len(classifiers.evaluations)}
