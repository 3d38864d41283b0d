"""The run context every step receives: settings, the pipeline config (its preset), the samples and their
test split, the run's model and report folders, the device. Frozen: a step reads it, and writes what it
produces into ``ctx.report`` or returns it; the only mutable parts are the report and the pixel cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.config import Settings
from annotator.evaluation.crossval import grouped_holdout
from annotator.imaging.io import read_image
from annotator.recognition.config import PipelineConfig
from annotator.recognition.dataset import Sample
from annotator.recognition.steps.report import RunReport
from annotator.segmentation.presets import TrainConfig, get_preset

log = logging.getLogger(__name__)


def digest(keys: Sequence[str]) -> str:
    """A short fingerprint of a list of sample keys (a split, a fold's data)."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunContext:
    settings: Settings
    config: PipelineConfig
    samples: tuple[Sample, ...]
    test_keys: frozenset[str]
    work_path: Path  # <models>/recognition/<preset>: checkpoints, folds, the manifest
    report: RunReport
    progress: bool = True
    echo: Callable[[str], None] = log.info
    _pixels: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def device(self) -> str:
        return self.settings.device

    def pixels(self, s: Sample) -> np.ndarray:
        """The sample's grayscale image, read once per run."""
        if s.key not in self._pixels:
            self._pixels[s.key] = read_image(s.image_path)
        return self._pixels[s.key]

    def is_test(self, s: Sample) -> bool:
        return s.key in self.test_keys

    def note(self, text: str) -> None:
        """A sentence for the README's "Data and splits", echoed as the run goes."""
        self.report.notes.append(text)
        self.echo(text)

    def record_split(self, name: str, items: Sequence[Sample]) -> None:
        """Provenance: the split's size and the hash of its image ids (results.json)."""
        keys = sorted(s.key for s in items)
        self.report.results.setdefault("provenance", {}).setdefault("splits", {})[name] = {
            "n": len(keys), "image_ids_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest()}

    def fit_validation(self, items: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
        """The training items cut into fit and validation: the protocol's own train/val (Stage IV's 80/20)
        when every item has one, else a patient-grouped, class-stratified cut of ``validation_share``; with
        under 10 patients no validation part."""
        items = list(items)
        fit = [s for s in items if s.split == "train"]
        val = [s for s in items if s.split == "val"]
        if fit and val and len(fit) + len(val) == len(items):
            return fit, val
        if len({s.group for s in items}) < 10:
            return items, []
        classes = sorted({s.cls or "" for s in items})
        val_idx = set(grouped_holdout([classes.index(s.cls or "") for s in items], [s.group for s in items],
                                      self.config.validation_share, seed=self.config.seed).tolist())
        return [s for i, s in enumerate(items) if i not in val_idx], [s for i, s in enumerate(items) if i in val_idx]

    def segmentation_config(self, budget_s: float | None) -> TrainConfig:
        """The segmentation preset's TrainConfig with this step's time budget."""
        base = get_preset(self.config.segmentation_preset)
        return dataclasses.replace(base, max_train_s=budget_s if budget_s is not None else base.max_train_s,
                                   verify_fast_paths=False)


def start_run(settings: Settings, config: PipelineConfig, samples: Sequence[Sample], report_dir: Path,
              progress: bool = True, echo: Callable[[str], None] | None = None) -> RunContext:
    """The context of a run: decides the test split (stated in the README) and records it in the model folder."""
    work = settings.models_path / "recognition" / config.preset
    report = RunReport(report_dir, results={"config": config.to_dict()},
                       manifest={"preset": config.preset, "infection_configuration": config.infection_configuration,
                                 "scorecam_max_maps": config.scorecam_max_maps, "classifiers": {}})
    test_keys, note = choose_test_split(samples, config)
    ctx = RunContext(settings, config, tuple(samples), test_keys, work, report, progress, echo or log.info)
    ctx.note(note)
    ctx.record_split("test", [s for s in samples if s.key in test_keys])
    ctx.record_split("train", [s for s in samples if s.key not in test_keys])
    ctx.note(training_note(config))
    work.mkdir(parents=True, exist_ok=True)
    (work / "test_split.json").write_text(json.dumps(sorted(test_keys)))
    return ctx


def training_note(config: PipelineConfig) -> str:
    """How the classifiers train (section 4.1), and where the preset differs from the thesis' settings."""
    cs, paper = config.classifier, PipelineConfig().classifier
    size = f"{cs.input_size_px} px" if cs.input_size_px else "each network's own input size (224 px, 299 for the Inceptions)"
    text = (f"Classifiers: batch {cs.batch_size}, up to {cs.epochs} epochs, {size}, Adam lr {cs.learning_rate:g}; a "
            f"validation part stops training after 8 epochs without a lower validation loss and divides the learning "
            f"rate by 5 after 3 (section 4.1).")
    def shown(value) -> str:
        return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    differs = [f"{name} {shown(getattr(cs, name))} (thesis {shown(getattr(paper, name))})"
               for name in ("batch_size", "epochs", "input_size_px", "learning_rate", "max_train_s")
               if getattr(cs, name) != getattr(paper, name)]
    if differs:
        text += f" Preset {config.preset} differs from the thesis' settings (a CPU budget): {', '.join(differs)}."
    return text


def choose_test_split(samples: Sequence[Sample], config: PipelineConfig) -> tuple[frozenset[str], str]:
    """Stage IV's verified set when there is one, else a patient-grouped, class-stratified hold-out; and why."""
    labelled = [s for s in samples if s.cls]
    verified = frozenset(s.key for s in samples if s.split == "test")
    if verified:
        return verified, f"Test split: Stage IV's verified set, {len(verified)} images."
    classes = sorted({s.cls for s in labelled})
    idx = grouped_holdout([classes.index(s.cls) for s in labelled], [s.group for s in labelled],
                          config.test_share, seed=config.seed)
    keys = frozenset(labelled[i].key for i in idx)
    return keys, (
        f"Test split: no verified (Stage IV) test set in this workspace, so a stated split: a patient-grouped, "
        f"class-stratified hold-out of {len(keys)} of {len(labelled)} labelled images "
        f"(share {config.test_share}, seed {config.seed}); no patient is on both sides."
    )
