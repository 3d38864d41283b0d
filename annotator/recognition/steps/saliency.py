"""Step: Score-CAM maps of the first network, one figure per example COVID-19 image of fold 0 with a panel
per input mode."""

from __future__ import annotations

from pathlib import Path

from annotator.evaluation import plots
from annotator.evaluation.crossval import stratified_group_folds
from annotator.recognition.classifier import Classifier
from annotator.recognition.config import CLASS_SCHEMES
from annotator.recognition.dataset import select_scheme
from annotator.recognition.report import saliency_overlay
from annotator.recognition.scorecam import saliency_for
from annotator.recognition.steps.classification import TrainedClassifiers, classifier_config
from annotator.recognition.steps.context import RunContext
from annotator.recognition.steps.lung import LungNetwork


def draw_saliency(ctx: RunContext, lungs: LungNetwork, trained: TrainedClassifiers) -> None:
    config = ctx.config
    plt = plots._pyplot()
    for scheme in config.schemes:
        arch = config.networks[0]
        models = {}
        for mode in config.input_modes:
            path = trained.get((scheme, classifier_config(ctx, arch, config.preprocessing, mode).key))
            if path is not None:
                models[mode] = Classifier.from_checkpoint(path, ctx.device)
        if not models:
            continue
        items, labels = select_scheme(ctx.samples, CLASS_SCHEMES[scheme], scheme)
        fold0 = stratified_group_folds(labels, [s.group for s in items], config.folds, config.seed)[0]
        examples = [items[i] for i in fold0 if labels[i] == 0][: config.scorecam_examples]
        lungs.predict(examples)
        for s in examples:
            image = ctx.pixels(s)
            fig, axes = plt.subplots(1, 1 + len(models), figsize=(4 * (1 + len(models)), 4.3), dpi=100)
            axes[0].imshow(image, cmap="gray")
            axes[0].set_title(f"{s.cls} ({Path(str(s.image_path)).name[:24]})", fontsize=8)
            for ax, (mode, clf) in zip(axes[1:], models.items(), strict=True):
                sal, c = saliency_for(clf, image, lungs.masks[s.key], None, config.scorecam_max_maps)
                ax.imshow(saliency_overlay(image, sal))
                ax.set_title(f"Score-CAM {mode}: {clf.class_names[c]}", fontsize=8)
            for ax in axes:
                ax.axis("off")
            fig.tight_layout()
            path = ctx.report.report_path / f"scorecam_{scheme}_{s.key.replace('/', '_').replace('.', '_')}.png"
            fig.savefig(path)
            plt.close(fig)
            ctx.report.plot(path)
