"""Step: the infection network in both configurations (parallel: the CXR alone; cascaded: the CXR with its
lungs), trained on the infection masks and scored on the test split (Table 6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from annotator.errors import TrainingError
from annotator.evaluation.crossval import grouped_holdout
from annotator.evaluation.metrics import segmentation_scores
from annotator.evaluation.tables import MIN_TEST_IMAGES, SEG_METRICS, Table, percent
from annotator.imaging.io import read_mask
from annotator.recognition.config import INFECTION_CONFIGURATIONS
from annotator.recognition.dataset import Sample
from annotator.recognition.infection import infection_inputs, training_pairs
from annotator.recognition.quantification import infected_mask
from annotator.recognition.steps.context import RunContext
from annotator.recognition.steps.lung import BATCH, LungNetwork, reference_lung
from annotator.segmentation.predict import Predictor
from annotator.segmentation.registry import get_spec
from annotator.segmentation.train import train_model


@dataclass
class InfectionNetworks:
    """The infection network of each configuration, and the lung masks its input needs."""

    lungs: LungNetwork
    predictors: dict[str, Predictor] = field(default_factory=dict)

    def proba(self, items: Sequence[Sample], conf: str) -> list[np.ndarray]:
        """Per sample, the infection probability map of configuration ``conf``."""
        self.lungs.predict(items)
        out = []
        for start in range(0, len(items), BATCH):
            chunk = items[start:start + BATCH]
            inputs = infection_inputs([self.lungs.pixels(s) for s in chunk], [self.lungs.masks[s.key] for s in chunk],
                                      conf)
            out.extend(self.predictors[conf].predict_proba(inputs))
        return out


def _reference_infection(ctx: RunContext, s: Sample) -> np.ndarray:
    return read_mask(s.infection_mask_path, ctx.pixels(s).shape)


def train_infection(ctx: RunContext, lungs: LungNetwork) -> InfectionNetworks:
    config = ctx.config
    with_mask = [s for s in ctx.samples if s.infection_mask_path is not None]
    if not with_mask:
        raise TrainingError("no image in the store has an infection mask; import some (e.g. --layout covid-qu-ex)")
    test = [s for s in with_mask if ctx.is_test(s)]
    if not test:  # the workspace split missed them: a stated hold-out of the infection set
        classes = sorted({s.cls or "" for s in with_mask})
        idx = grouped_holdout([classes.index(s.cls or "") for s in with_mask], [s.group for s in with_mask],
                              config.test_share, seed=config.seed)
        test = [with_mask[i] for i in idx]
    test_keys = {s.key for s in test}
    train = [s for s in with_mask if s.key not in test_keys]
    positives = sum(1 for s in train if read_mask(s.infection_mask_path).any())
    if positives == 0:
        raise TrainingError(f"none of the {len(train)} training infection masks has an infected pixel")
    ctx.note(f"Infection segmentation: {len(train)} training images ({positives} with infection), "
             f"{len(test)} test images; validated on the training images (too few to hold out).")
    tconfig = ctx.segmentation_config(config.infection_budget_s)
    spec = get_spec(config.infection_spec, tconfig.input_size_px)
    lungs.predict(test)
    networks = InfectionNetworks(lungs)
    report = ctx.report
    table = Table("Infection segmentation on the test split: parallel vs cascaded (Table 6)",
                  ["configuration", "network", "n", *(f"{m} %" for m in SEG_METRICS)])
    for conf in INFECTION_CONFIGURATIONS:
        def pairs(items, conf=conf):
            images = [ctx.pixels(s) for s in items]
            lung_masks = [reference_lung(ctx, s) if s.lung_mask_path else lungs.mask(s) for s in items]
            infections = [_reference_infection(ctx, s) for s in items]
            return training_pairs(images, lung_masks, infections, conf)

        fit = pairs(train)
        ctx.echo(f"infection network {spec.name} ({conf}): {len(fit)} training images")
        res = train_model(spec, tconfig, fit, fit, ctx.work_path / f"infection-{conf}", progress=ctx.progress,
                          snapshot={"purpose": f"recognition-infection-{conf}"}, device=ctx.device)
        predictor = Predictor.from_checkpoint(res.checkpoint_path, backend="eager", device=ctx.device)
        networks.predictors[conf] = predictor
        report.register("infection", spec.name, res.checkpoint_path, res.model_version, {**res.metrics, "configuration": conf})
        if conf == config.infection_configuration:
            report.manifest["infection"] = str(res.checkpoint_path.relative_to(ctx.work_path))
        images = [ctx.pixels(s) for s in test]
        lung_masks = [lungs.masks[s.key] for s in test]
        probs = predictor.predict_proba(infection_inputs(images, lung_masks, conf))
        predicted = [infected_mask(lm, p) for lm, p in zip(lung_masks, probs, strict=True)]
        scores = segmentation_scores(predicted, [_reference_infection(ctx, s) for s in test])
        n = scores["n"]
        table.add(conf, spec.name, n, *(percent(scores[m], scores[f"{m}_ci"], n) for m in SEG_METRICS))
        report.results.setdefault("infection", {})[conf] = scores
    table.note = ("Predicted infection = infection network (p > 0.5) AND predicted lungs. n = test images with a "
                  "reference infection mask (all-zero masks of non-COVID/normal images included); fewer than "
                  f"{MIN_TEST_IMAGES} reads 'too few to measure'.")
    report.table("infection", table)
    return networks
