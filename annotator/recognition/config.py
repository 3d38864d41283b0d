"""What ``annotator train-pipeline`` trains: frozen dataclasses with the thesis' settings (``paper``) and a
two-core CPU preset (``quick``), optionally overridden by a TOML file. No torch here.

A TOML file looks like::

    preset = "quick"            # the base the rest overrides
    folds = 5
    networks = ["squeezenet", "resnet18"]
    [classifier]                # fields of recognition.classifier.ClassifierConfig
    input_size_px = 128
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from annotator.errors import ConfigError, UnknownNameError

# Classification schemes: name -> the store's classes, in the order of the network's outputs.
CLASS_SCHEMES: dict[str, tuple[str, ...]] = {
    "covid-pneumonia-normal": ("covid", "non_covid_pneumonia", "normal"),
    "covid-sars-mers": ("covid", "sars", "mers"),
}
INFECTION_CONFIGURATIONS = ("parallel", "cascaded")
# The architectures the classifier registry knows (kept here as names so this module stays torch-free;
# tests check it equals classifier.ARCHITECTURES).
CLASSIFIER_ARCHITECTURES = ("resnet18", "resnet50", "densenet121", "densenet161", "densenet201", "inception_v3",
                            "inception_v4", "squeezenet")


def check_scheme_name(name: str) -> tuple[str, ...]:
    if name not in CLASS_SCHEMES:
        raise UnknownNameError("classification scheme", name, CLASS_SCHEMES)
    return CLASS_SCHEMES[name]


@dataclass(frozen=True)
class ClassifierSettings:
    """The shared training settings of every classifier of a run (see classifier.ClassifierConfig)."""

    input_size_px: int | None = None  # None: each architecture's own (224 px, 299 for the Inceptions)
    epochs: int = 15
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    balance: bool = True
    balance_cap: int | None = None
    seed: int = 0
    weights_dir: str | None = None  # a folder with <arch>.pt ImageNet state dicts; None: from scratch


@dataclass(frozen=True)
class PipelineConfig:
    preset: str = "paper"
    # segmentation engine: spec names and TrainConfig preset (+ a per-network time budget, seconds)
    lung_spec: str = "unet-resnet18"
    infection_spec: str = "fpn-densenet121"
    segmentation_preset: str = "paper"
    lung_budget_s: float | None = None
    infection_budget_s: float | None = None
    infection_configuration: str = "parallel"  # the one deployed; both are compared (Table 6)
    max_lung_train_images: int | None = None  # a CPU budget: a class-stratified subset of the training split
    # classification
    schemes: tuple[str, ...] = ("covid-pneumonia-normal", "covid-sars-mers")
    networks: tuple[str, ...] = ("resnet18", "resnet50", "densenet121", "densenet161", "densenet201",
                                 "inception_v3", "inception_v4", "squeezenet")
    input_modes: tuple[str, ...] = ("plain", "segmented")
    preprocessing: str = "stack"  # the scheme used by Tables 9-10
    compare_preprocessing: tuple[str, ...] = ("original", "clahe", "complement", "stack")  # Table 4
    compare_network: str = "resnet18"  # Table 4's network
    folds: int = 5
    test_share: float = 0.2  # the stated hold-out when there is no verified test set
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    # report
    scorecam_examples: int = 6
    scorecam_max_maps: int | None = None
    timing_images: int = 20
    seed: int = 0

    def __post_init__(self):
        for s in self.schemes:
            check_scheme_name(s)
        for n in (*self.networks, self.compare_network):
            if n not in CLASSIFIER_ARCHITECTURES:
                raise UnknownNameError("classifier architecture", n, CLASSIFIER_ARCHITECTURES)
        if self.infection_configuration not in INFECTION_CONFIGURATIONS:
            raise UnknownNameError("infection configuration", self.infection_configuration, INFECTION_CONFIGURATIONS)
        for m in self.input_modes:
            if m not in ("plain", "segmented"):
                raise UnknownNameError("classifier input", m, ("plain", "segmented"))
        if self.folds < 2:
            raise ConfigError(f"folds must be at least 2, got {self.folds}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Two CPU cores, <= 40 minutes on the 922-image sample: SqueezeNet 1.1 at 128 px for every
# comparison (7 configurations x 5 folds), 6 epochs (3 left some folds at chance), minority classes
# topped up to 150 images; U-Net-ResNet18 for lungs (240 training images) and infection under a time
# budget (the engine's quick preset: 128 px, bf16).
QUICK = PipelineConfig(
    preset="quick",
    infection_spec="unet-resnet18",
    segmentation_preset="quick",
    lung_budget_s=240.0,
    infection_budget_s=60.0,
    max_lung_train_images=240,
    networks=("squeezenet",),
    compare_network="squeezenet",
    classifier=ClassifierSettings(input_size_px=128, epochs=6, batch_size=32, learning_rate=1e-3, balance_cap=150),
    scorecam_examples=4,
    scorecam_max_maps=64,
    timing_images=10,
)

# Tests: the quick setting with tiny networks at 64 px, 2 folds, one epoch.
TINY = dataclasses.replace(
    QUICK,
    preset="tiny",
    segmentation_preset="tiny",
    lung_budget_s=10.0,
    infection_budget_s=5.0,
    max_lung_train_images=8,
    compare_preprocessing=("original", "stack"),
    folds=2,
    classifier=ClassifierSettings(input_size_px=64, epochs=1, batch_size=16, learning_rate=1e-3, balance_cap=60),
    scorecam_examples=1,
    scorecam_max_maps=16,
    timing_images=2,
)

PIPELINE_PRESETS: dict[str, PipelineConfig] = {
    # The thesis: all eight networks, 224 px (299 for the Inceptions), 15 epochs, 5 folds, every Score-CAM map.
    "paper": PipelineConfig(),
    "quick": QUICK,
    "tiny": TINY,
}


def get_pipeline_preset(name: str) -> PipelineConfig:
    if name not in PIPELINE_PRESETS:
        raise UnknownNameError("pipeline preset", name, PIPELINE_PRESETS)
    return PIPELINE_PRESETS[name]


def _apply(base, values: dict, what: str):
    names = {f.name for f in dataclasses.fields(base)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {sorted(unknown)}; valid: {', '.join(sorted(names))}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return dataclasses.replace(base, **fixed)


def load_pipeline_config(preset: str = "quick", path: Path | None = None, **overrides) -> PipelineConfig:
    """The preset, then the TOML file's values (its own ``preset`` key picks the base), then overrides."""
    values: dict = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read pipeline config {path}: {exc}") from exc
        values = values.get("pipeline", values)
    base = get_pipeline_preset(values.pop("preset", preset))
    classifier_values = values.pop("classifier", {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = _apply(base, values, "pipeline")
        if classifier_values:
            config = dataclasses.replace(config, classifier=_apply(config.classifier, classifier_values, "classifier"))
    except TypeError as exc:
        raise ConfigError(f"invalid pipeline config: {exc}") from exc
    return config
