"""Step: the infection networks, trained on the infection masks of the training split and scored on the
test split: the first network in both configurations (parallel: the CXR alone; cascaded: the CXR with its
lungs; Table 6), every network in the configured one (Table 7); the best DSC of Table 7 is deployed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.errors import TrainingError
from annotator.evaluation.crossval import grouped_holdout
from annotator.evaluation.metrics import segmentation_scores
from annotator.evaluation.tables import MIN_TEST_IMAGES, Table
from annotator.imaging.io import read_mask
from annotator.recognition.config import INFECTION_CONFIGURATIONS
from annotator.recognition.dataset import Sample
from annotator.recognition.infection import infection_inputs, training_pairs
from annotator.recognition.quantification import infected_mask
from annotator.recognition.steps.context import RunContext
from annotator.recognition.steps.lung import BATCH, LungNetwork, reference_lung, seg_cells, seg_columns, training_sets
from annotator.segmentation.predict import Predictor
from annotator.segmentation.registry import get_spec
from annotator.segmentation.train import train_model


@dataclass
class InfectionNetworks:
    """Every trained infection network by (network, configuration), the deployed one, and the lungs."""

    lungs: LungNetwork
    predictors: dict[tuple[str, str], Predictor] = field(default_factory=dict)
    deployed: tuple[str, str] = ("", "")
    checkpoints: dict[tuple[str, str], Path] = field(default_factory=dict)

    def proba(self, items: Sequence[Sample], key: tuple[str, str] | None = None) -> list[np.ndarray]:
        """Per sample, the infection probability map of network ``key`` (default: the deployed one)."""
        name, conf = key or self.deployed
        self.lungs.predict(items)
        out = []
        for start in range(0, len(items), BATCH):
            chunk = items[start:start + BATCH]
            inputs = infection_inputs([self.lungs.pixels(s) for s in chunk], [self.lungs.masks[s.key] for s in chunk],
                                      conf)
            out.extend(self.predictors[(name, conf)].predict_proba(inputs))
        return out


def _reference_infection(ctx: RunContext, s: Sample) -> np.ndarray:
    return read_mask(s.infection_mask_path, ctx.pixels(s).shape)


def _splits(ctx: RunContext) -> tuple[list[Sample], list[Sample]]:
    with_mask = [s for s in ctx.samples if s.infection_mask_path is not None]
    if not with_mask:
        raise TrainingError("no image in the store has an infection mask; import some (e.g. --layout covid-qu-ex)")
    test = [s for s in with_mask if ctx.is_test(s)]
    if not test:  # the workspace split missed them: a stated hold-out of the infection set
        classes = sorted({s.cls or "" for s in with_mask})
        idx = grouped_holdout([classes.index(s.cls or "") for s in with_mask], [s.group for s in with_mask],
                              ctx.config.test_share, seed=ctx.config.seed)
        test = [with_mask[i] for i in idx]
    test_keys = {s.key for s in test}
    return [s for s in with_mask if s.key not in test_keys], test


def train_infection(ctx: RunContext, lungs: LungNetwork) -> InfectionNetworks:
    config, report = ctx.config, ctx.report
    train, test = _splits(ctx)
    positives = sum(1 for s in train if read_mask(s.infection_mask_path).any())
    if positives == 0:
        raise TrainingError(f"none of the {len(train)} training infection masks has an infected pixel")
    fit, val = training_sets(ctx, train, "Infection networks", config.max_infection_train_images)
    for name, items in (("infection_fit", fit), ("infection_validation", val), ("infection_test", test)):
        ctx.record_split(name, items)
    ctx.note(f"Infection segmentation: {len(fit)} training and {len(val)} validation images ({positives} of "
             f"{len(train)} with infection), {len(test)} test images.")
    tconfig = ctx.segmentation_config(config.infection_budget_s)
    lungs.predict(test)
    networks = InfectionNetworks(lungs)
    deployed_conf = config.infection_configuration
    runs = [(config.infection_networks[0], c) for c in INFECTION_CONFIGURATIONS]
    runs += [(n, deployed_conf) for n in config.infection_networks[1:]]
    images = [ctx.pixels(s) for s in test]
    lung_masks = [lungs.masks[s.key] for s in test]
    truth = [_reference_infection(ctx, s) for s in test]
    scores_of = {}
    for name, conf in runs:
        spec = get_spec(name, tconfig.input_size_px)

        def pairs(items, conf=conf):
            lung_refs = [reference_lung(ctx, s) if s.lung_mask_path else lungs.mask(s) for s in items]
            return training_pairs([ctx.pixels(s) for s in items], lung_refs,
                                  [_reference_infection(ctx, s) for s in items], conf)

        ctx.echo(f"infection network {spec.name} ({conf}): {len(fit)} training images")
        res = train_model(spec, tconfig, pairs(fit), pairs(val), ctx.work_path / "infection" / f"{name}-{conf}",
                          progress=ctx.progress, snapshot={"purpose": f"recognition-infection-{conf}"},
                          device=ctx.device)
        predictor = Predictor.from_checkpoint(res.checkpoint_path, backend="eager", device=ctx.device)
        networks.predictors[(name, conf)] = predictor
        networks.checkpoints[(name, conf)] = res.checkpoint_path
        report.register("infection", name, res.checkpoint_path, res.model_version, {**res.metrics, "configuration": conf})
        probs = predictor.predict_proba(infection_inputs(images, lung_masks, conf))
        predicted = [infected_mask(lm, p) for lm, p in zip(lung_masks, probs, strict=True)]
        scores_of[(name, conf)] = segmentation_scores(predicted, truth)
        report.results.setdefault("infection", {}).setdefault(conf, {})[name] = scores_of[(name, conf)]
    networks.deployed = max(((n, deployed_conf) for n in config.infection_networks),
                            key=lambda k: scores_of[k]["dsc"])
    report.manifest["infection"] = str(networks.checkpoints[networks.deployed].relative_to(ctx.work_path))
    ctx.note(f"Deployed infection network: {networks.deployed[0]} ({deployed_conf}; best test DSC in Table 7).")
    note = ("Predicted infection = infection network (p > 0.5) AND predicted lungs (the deployed lung network). "
            "n = test images with a reference infection mask (all-zero masks of non-COVID/normal images "
            f"included); fewer than {MIN_TEST_IMAGES} reads 'too few to measure'.")
    t6 = Table(f"Infection segmentation, parallel vs cascaded, {config.infection_networks[0]} (Table 6)",
               seg_columns("configuration", "network"))
    for conf in INFECTION_CONFIGURATIONS:
        t6.add(conf, config.infection_networks[0], *seg_cells(scores_of[(config.infection_networks[0], conf)]))
    t6.note = note
    report.table("infection_configurations", t6)
    t7 = Table(f"Infection segmentation per network, {deployed_conf} configuration (Table 7)", seg_columns("network"))
    for name in config.infection_networks:
        t7.add(name, *seg_cells(scores_of[(name, deployed_conf)]))
    t7.note = note + f" Deployed: {networks.deployed[0]}."
    report.table("infection", t7)
    return networks
