"""What ``annotator train-pipeline`` trains: frozen dataclasses with the thesis' settings (``paper``) and a
two-core CPU preset (``quick``), optionally overridden by a TOML file. No torch here.

A TOML file looks like::

    preset = "quick"            # the base the rest overrides
    folds = 5
    networks = ["squeezenet", "resnet18"]   # the classifiers
    lung_networks = ["unet-resnet18", "fpn-resnet18"]
    [classifier]                # fields of recognition.classifier.ClassifierConfig
    input_size_px = 128
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from annotator.errors import ConfigError, UnknownNameError
from annotator.segmentation.registry import ARCHITECTURES, ENCODERS, get_spec

# Classification schemes: name -> the store's classes, in the order of the network's outputs.
CLASS_SCHEMES: dict[str, tuple[str, ...]] = {
    "covid-pneumonia-normal": ("covid", "non_covid_pneumonia", "normal"),
    "covid-sars-mers": ("covid", "sars", "mers"),
}
# The store's classes a scheme's class takes beyond its own name. The 3-class triage sorts every image: its
# "non-COVID pneumonia" takes the store's other lung infections, the viral pneumonias SARS and MERS and
# tuberculosis (a bacterial lung infection; COVID-QU-Ex's "Non-COVID" class groups viral and bacterial
# infections alike), so Study II's test set is the whole verified test split.
SCHEME_MEMBERS: dict[str, dict[str, tuple[str, ...]]] = {
    "covid-pneumonia-normal": {"non_covid_pneumonia": ("sars", "mers", "tuberculosis")},
}
INFECTION_CONFIGURATIONS = ("parallel", "cascaded")
# The architectures the classifier registry knows (kept here as names so this module stays torch-free;
# tests check it equals classifier.ARCHITECTURES).
CLASSIFIER_ARCHITECTURES = ("resnet18", "resnet50", "densenet121", "densenet161", "densenet201", "inception_v3",
                            "inception_v4", "squeezenet")
# The thesis' 15 segmentation networks (Tables 5, 7, 11): U-Net, U-Net++, FPN x five encoders.
ALL_SEGMENTATION_NETWORKS = tuple(f"{a}-{e}" for a in ARCHITECTURES for e in ENCODERS)
# The thesis' classifiers (Tables 4, 9, 10, 12); each at its own input size (224 px, 299 for the Inceptions).
ALL_CLASSIFIERS = CLASSIFIER_ARCHITECTURES


def check_scheme_name(name: str) -> tuple[str, ...]:
    if name not in CLASS_SCHEMES:
        raise UnknownNameError("classification scheme", name, CLASS_SCHEMES)
    return CLASS_SCHEMES[name]


def scheme_class(scheme: str, cls: str | None) -> str | None:
    """The class of ``scheme`` that a store class belongs to (its own name or a member), else None."""
    names = check_scheme_name(scheme)
    if cls in names:
        return cls
    for name, members in SCHEME_MEMBERS.get(scheme, {}).items():
        if cls in members:
            return name
    return None


@dataclass(frozen=True)
class ClassifierSettings:
    """The shared training settings of every classifier of a run (see classifier.ClassifierConfig)."""

    input_size_px: int | None = None  # None: each architecture's own (224 px, 299 for the Inceptions)
    epochs: int = 15  # at most: a validation set stops it earlier (section 4.1)
    max_train_s: float | None = None  # a CPU budget per training; None: no limit
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
    lung_networks: tuple[str, ...] = ALL_SEGMENTATION_NETWORKS  # Table 5; the best DSC is deployed
    infection_networks: tuple[str, ...] = ALL_SEGMENTATION_NETWORKS  # Table 7; the first also in Table 6
    stage1_network: str = "unet-resnet18"  # Table 3: Stage I's U-Net on the seed set (Montgomery/Shenzhen)
    segmentation_preset: str = "paper"
    lung_budget_s: float | None = None
    infection_budget_s: float | None = None
    infection_configuration: str = "parallel"  # the one deployed and of Tables 7-8; both compared in Table 6
    max_lung_train_images: int | None = None  # a CPU budget: a class-stratified subset of the training split
    max_infection_train_images: int | None = None  # the same for the infection networks
    # classification
    schemes: tuple[str, ...] = ("covid-pneumonia-normal", "covid-sars-mers")
    networks: tuple[str, ...] = ALL_CLASSIFIERS
    input_modes: tuple[str, ...] = ("plain", "segmented")
    preprocessing: str = "stack"  # the scheme of Study II (Tables 9-10)
    compare_preprocessing: tuple[str, ...] = ("original", "clahe", "complement", "stack")  # Study I's search
    folds: int = 5  # Study I (Table 4): cross-validation
    test_share: float = 0.2  # the stated hold-out when there is no verified test set
    validation_share: float = 0.2  # of each training set (the protocol's 80/20)
    max_train_per_class: int | None = None  # a CPU budget: classifier training sets capped per class
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    # report
    scorecam_examples: int = 6
    scorecam_max_maps: int | None = None
    timing_images: int = 20
    seed: int = 0

    def __post_init__(self):
        for s in self.schemes:
            check_scheme_name(s)
        for n in (*self.lung_networks, *self.infection_networks, self.stage1_network):
            get_spec(n)
        if not self.lung_networks or not self.infection_networks or not self.networks:
            raise ConfigError("lung_networks, infection_networks and networks need at least one network each")
        for n in self.networks:
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


# Two CPU cores, <= 40 minutes on both sample sets (cxr + cxr-quex): one network of each decoder
# (ResNet18 encoder) for lungs and infection under time budgets (the engine's quick preset: 128 px, bf16),
# three classifiers at 96 px, training sets capped at 60 images a class, 6 epochs or 35 s each at most,
# Study I with the "stack" preprocessing only (the paper preset searches all four).
QUICK_SEGMENTATION = ("unet-resnet18", "unetplusplus-resnet18", "fpn-resnet18")
QUICK = PipelineConfig(
    preset="quick",
    lung_networks=QUICK_SEGMENTATION,
    infection_networks=QUICK_SEGMENTATION,
    segmentation_preset="quick",
    lung_budget_s=90.0,
    infection_budget_s=45.0,
    max_lung_train_images=240,
    networks=("squeezenet", "resnet18", "densenet121"),
    compare_preprocessing=("stack",),
    max_train_per_class=60,
    classifier=ClassifierSettings(input_size_px=96, epochs=6, max_train_s=35.0, batch_size=32, learning_rate=1e-3,
                                  balance_cap=60),
    scorecam_examples=1,
    scorecam_max_maps=32,
    timing_images=10,
)

# Tests: tiny networks at 64 px, 2 folds, one epoch; a U-Net and an FPN, one classifier.
TINY = dataclasses.replace(
    QUICK,
    preset="tiny",
    lung_networks=("unet-resnet18", "fpn-resnet18"),
    infection_networks=("unet-resnet18", "fpn-resnet18"),
    networks=("squeezenet",),
    segmentation_preset="tiny",
    lung_budget_s=6.0,
    infection_budget_s=4.0,
    max_lung_train_images=8,
    compare_preprocessing=("original", "stack"),
    folds=2,
    max_train_per_class=20,
    classifier=ClassifierSettings(input_size_px=64, epochs=1, batch_size=16, learning_rate=1e-3, balance_cap=20),
    scorecam_examples=1,
    scorecam_max_maps=8,
    timing_images=2,
)

PIPELINE_PRESETS: dict[str, PipelineConfig] = {
    # The thesis: 15 lung and 15 infection networks, the eight classifiers at 224 px (299 for the Inceptions),
    # up to 15 epochs with early stopping, 5 folds, every Score-CAM map.
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


NETWORK_LIST_KEYS = {"lung": "lung_networks", "infection": "infection_networks", "classifiers": "networks",
                     "stage1": "stage1_network"}


def load_network_lists(path: Path) -> dict:
    """``--networks FILE``: a TOML with any of ``lung``, ``infection``, ``classifiers`` (lists of names) and
    ``stage1`` (one name); returns the PipelineConfig overrides (validated when the config is built)."""
    try:
        values = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read network lists {path}: {exc}") from exc
    unknown = set(values) - set(NETWORK_LIST_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in {path}; valid: {', '.join(NETWORK_LIST_KEYS)}")
    return {NETWORK_LIST_KEYS[k]: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
