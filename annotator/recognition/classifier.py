"""Classification networks (torchvision / timm, weights none or a local file): registry, prediction and
self-describing checkpoints (training: ``recognition.training``). A heavy leaf: imports torch.

Architectures are registered once in ``ARCHITECTURES``; a wrong name raises an error listing the valid
ones. Inputs are ``size x size x 3`` float arrays from ``preprocessing.prepare``; the network normalises
them with the ImageNet mean and standard deviation (so a local ImageNet weights file fits).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from annotator.device import resolve_device
from annotator.errors import ModelError, TrainingError, UnknownNameError
from annotator.evaluation.metrics import classification_report, confusion_matrix
from annotator.recognition.preprocessing import check_input_mode, check_scheme, prepare

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Architecture:
    name: str
    library: str  # torchvision | timm
    builder_name: str
    target_layer: str  # Score-CAM's layer: the last convolutional block
    min_input_px: int = 32
    paper_input_px: int = 224


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("resnet18", "torchvision", "resnet18", "layer4"),
        Architecture("resnet50", "torchvision", "resnet50", "layer4"),
        Architecture("densenet121", "torchvision", "densenet121", "features"),
        Architecture("densenet161", "torchvision", "densenet161", "features"),
        Architecture("densenet201", "torchvision", "densenet201", "features"),
        Architecture("inception_v3", "torchvision", "inception_v3", "Mixed_7c", min_input_px=75, paper_input_px=299),
        Architecture("inception_v4", "timm", "inception_v4", "features", min_input_px=75, paper_input_px=299),
        Architecture("squeezenet", "torchvision", "squeezenet1_1", "features"),
    )
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UnknownNameError("classifier architecture", name, ARCHITECTURES) from None


class Normalised(nn.Module):
    """ImageNet normalisation in front of a network, so callers pass 0..1 NCHW tensors."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def load_local_weights(net: nn.Module, weights_path: Path) -> list[str]:
    """Load a local state dict into ``net``, skipping keys whose shape differs (the classifier head).
    Returns the skipped keys; a file that matches nothing is a ModelError."""
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"cannot read weights file {weights_path}: {exc}") from exc
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ModelError(f"{weights_path}: no tensor matches the network's layers (wrong architecture?)")
    net.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def build_network(arch: str, num_classes: int, weights_path: Path | None = None) -> nn.Module:
    """A fresh network with ``num_classes`` outputs, ImageNet normalisation in front."""
    spec = get_architecture(arch)
    if spec.library == "timm":
        import timm

        net = timm.create_model(spec.builder_name, pretrained=False, num_classes=num_classes)
    else:
        import torchvision

        kwargs: dict = {"weights": None, "num_classes": num_classes}
        if spec.name == "inception_v3":
            kwargs.update(aux_logits=False, init_weights=False)
        net = torchvision.models.get_model(spec.builder_name, **kwargs)
        if spec.name == "squeezenet":
            # torchvision's head ends Conv -> ReLU -> pool: trained from scratch, the ReLU often zeroes every
            # logit (uniform 1/3 outputs, loss stuck at ln 3): in the quick pipeline's 35 cross-validation folds,
            # 8 gave only uniform outputs and 16 more in part. Without it the logits are free (0 of 35); the
            # head has no weights to load either way.
            net.classifier[2] = nn.Identity()
    if weights_path is not None:
        skipped = load_local_weights(net, Path(weights_path))
        log.info("loaded %s; %d tensors left at their initial values", weights_path, len(skipped))
    return Normalised(net)


def target_layer(model: nn.Module, arch: str) -> nn.Module:
    """Score-CAM's layer of a built network."""
    net = model.net if isinstance(model, Normalised) else model
    return net.get_submodule(get_architecture(arch).target_layer)


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


@dataclass(frozen=True)
class ClassifierConfig:
    """How one classifier is trained (the thesis' settings in ``paper``; ``quick`` for 2 CPU cores)."""

    arch: str = "resnet18"
    input_size_px: int = 224
    preprocessing: str = "original"  # original | clahe | complement | stack
    input_mode: str = "plain"  # plain | segmented (lungs only)
    epochs: int = 15
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    max_train_s: float | None = None  # a CPU budget: training ends at the first batch past it (None: no limit)
    balance: bool = True  # class balancing by augmentation
    balance_cap: int | None = None  # top minority classes up to at most this many images
    seed: int = 0
    weights_path: str | None = None  # a local weights file (state dict); None: from scratch
    # section 4.1, with a validation set: stop after `patience` epochs without a lower validation loss,
    # divide the learning rate by 5 after `lr_patience` (the best epoch's weights are kept)
    patience: int = 8
    lr_patience: int = 3
    lr_factor: float = 0.2

    def __post_init__(self):
        spec = get_architecture(self.arch)
        check_scheme(self.preprocessing)
        check_input_mode(self.input_mode)
        if self.input_size_px < spec.min_input_px:
            raise TrainingError(f"{self.arch} needs inputs of at least {spec.min_input_px} px, got {self.input_size_px}")
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size})")

    @property
    def key(self) -> str:
        """A short name that identifies the configuration (folder names, table rows)."""
        return f"{self.arch}-{self.input_mode}-{self.preprocessing}-{self.input_size_px}px"

    def fingerprint(self) -> str:
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:10]


CLASSIFIER_PRESETS: dict[str, ClassifierConfig] = {
    "tiny": ClassifierConfig(arch="squeezenet", input_size_px=64, epochs=1, batch_size=16, learning_rate=1e-3, balance_cap=40),
    "quick": ClassifierConfig(arch="resnet18", input_size_px=96, epochs=3, batch_size=32, learning_rate=1e-3),
    "paper": ClassifierConfig(arch="resnet18", input_size_px=224, epochs=15, batch_size=16, learning_rate=1e-4),
}


def save_checkpoint(model: nn.Module, config: ClassifierConfig, class_names: Sequence[str], path: Path,
                    history: list[dict], trained_on: dict | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    digest = hashlib.sha256()
    for k in sorted(state):
        digest.update(k.encode())
        digest.update(state[k].detach().cpu().numpy().tobytes())
    version = f"cls-{config.arch}-{digest.hexdigest()[:12]}"
    tmp = path.with_suffix(".tmp")
    torch.save({"config": asdict(config), "class_names": list(class_names), "state_dict": state, "model_version": version, "history": history,
                "trained_on": trained_on or {}}, tmp)
    tmp.replace(path)
    return version


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """N x S x S x 3 arrays -> an N x 3 x S x S tensor (sharing the memory where it can)."""
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


@torch.inference_mode()
def predict_arrays(model: nn.Module, arrays: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities, N x classes (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for b in range(0, len(arrays), batch_size):
        x = to_tensor(np.stack(arrays[b : b + batch_size])).to(device)
        out.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


class Classifier:
    """A trained classifier loaded once: prepares raw CXRs itself (scheme, size, lung mask)."""

    def __init__(self, model: nn.Module, config: ClassifierConfig, class_names: list[str], model_version: str):
        self.model = model.eval()
        self.config = config
        self.class_names = class_names
        self.model_version = model_version

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str = "auto") -> Classifier:
        """Load on ``device`` (the setting; a checkpoint trained on any device loads on any other)."""
        path = Path(path)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            config = ClassifierConfig(**{**ckpt["config"], "weights_path": None})
            model = build_network(config.arch, len(ckpt["class_names"]))
            model.load_state_dict(ckpt["state_dict"])
        except (OSError, EOFError, KeyError, RuntimeError, TypeError, ValueError, pickle.UnpicklingError) as exc:
            raise ModelError(f"{path}: not a classifier checkpoint of this tool ({exc})") from exc
        return cls(model.to(resolve_device(device)), config, list(ckpt["class_names"]), ckpt["model_version"])

    def prepare(self, image: np.ndarray, lung_mask: np.ndarray | None = None) -> np.ndarray:
        if self.config.input_mode == "segmented":
            if lung_mask is None:
                raise ModelError(f"{self.model_version} takes lung-segmented input: pass the lung mask")
            return prepare(image, self.config.preprocessing, self.config.input_size_px, lung_mask)
        return prepare(image, self.config.preprocessing, self.config.input_size_px)

    def predict_proba(self, images: Sequence[np.ndarray], lung_masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
        masks = lung_masks if lung_masks is not None else [None] * len(images)
        return predict_arrays(self.model, [self.prepare(i, m) for i, m in zip(images, masks, strict=True)])

    def evaluate(self, images: Sequence[np.ndarray], labels: Sequence[str],
                 lung_masks: Sequence[np.ndarray] | None = None) -> dict:
        """Confusion matrix and per-class report on labelled images (labels are class names). A label the
        classifier was never trained on is refused before anything runs: its figures would be meaningless."""
        if len(images) != len(labels):
            raise ModelError(f"{len(images)} images but {len(labels)} labels")
        unseen = sorted({str(c) for c in labels} - set(self.class_names))
        if unseen:
            first = next(i for i, c in enumerate(labels) if str(c) in unseen)
            raise ModelError(f"{self.model_version} was trained on {self.class_names} and never saw class(es) "
                             f"{unseen} (first at image #{first}); evaluate it on its own classes only")
        truth = [self.class_names.index(str(c)) for c in labels]
        proba = self.predict_proba(images, lung_masks)
        cm = confusion_matrix(truth, proba.argmax(1).tolist(), len(self.class_names))
        return {"confusion": cm, "report": classification_report(cm, self.class_names), "proba": proba}

    def target_layer(self) -> nn.Module:
        return target_layer(self.model, self.config.arch)
