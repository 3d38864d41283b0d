"""Classification networks (torchvision / timm, weights none or a local file): registry, training,
prediction and self-describing checkpoints. A heavy leaf: imports torch.

Architectures are registered once in ``ARCHITECTURES``; a wrong name raises an error listing the valid
ones. Inputs are ``size x size x 3`` float arrays from ``preprocessing.prepare``; the network normalises
them with the ImageNet mean and standard deviation (so a local ImageNet weights file fits).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from annotator.device import apply_plan, backward_step, resolve_device, to_device, training_plan
from annotator.errors import ModelError, TrainingError, UnknownNameError
from annotator.evaluation.metrics import classification_report, confusion_matrix
from annotator.recognition.augmentation import IDENTITY, augment, balance_plan
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


@dataclass
class ClassifierResult:
    checkpoint_path: Path
    model_version: str
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    best_epoch: int | None = None  # with a validation set: the epoch whose weights were kept
    stopped_early: bool = False


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


@dataclass(frozen=True)
class ClassifierJob:
    """Everything a rank needs to train a classifier (picklable: rank 0 broadcasts it under torchrun)."""

    config: ClassifierConfig
    arrays: Sequence[np.ndarray]
    labels: Sequence[int]
    class_names: Sequence[str]
    validation: tuple[Sequence[np.ndarray], Sequence[int]] | None
    device: str


def train_classifier(
    config: ClassifierConfig,
    arrays: Sequence[np.ndarray],
    labels: Sequence[int],
    class_names: Sequence[str],
    out_path: Path,
    progress: Callable[[int, int], None] | None = None,
    validation: tuple[Sequence[np.ndarray], Sequence[int]] | None = None,
    device: str = "auto",
) -> ClassifierResult:
    """Train on prepared arrays (``preprocessing.prepare`` output) and save a checkpoint at ``out_path``.

    With ``validation`` (arrays, labels) training follows the thesis' section 4.1: the validation loss is
    measured after every epoch, the learning rate is divided by 5 when it has not improved for
    ``lr_patience`` epochs, training stops after ``patience`` epochs without improvement, and the best
    epoch's weights are saved. Without it, ``epochs`` epochs run and the last weights are saved.
    ``progress(done_steps, total_steps)`` is called after every batch (the CLI draws the bar). ``device`` is
    the setting (auto, cpu, cuda...): on a GPU mixed precision and channels_last (``annotator.device``).

    Under torchrun (``annotator --nproc N``) rank 0 broadcasts the job and every rank trains its share of
    each batch under DistributedDataParallel (batch statistics synchronised), as the segmentation
    trainings do (``annotator.segmentation.distributed``); rank 0 alone saves.
    """
    if len(arrays) != len(labels):
        raise TrainingError(f"{len(arrays)} images but {len(labels)} labels")
    present = sorted(set(int(v) for v in labels))
    if len(present) < 2:
        raise TrainingError(f"training needs at least 2 classes, got {[class_names[i] for i in present]}")
    from annotator.segmentation import distributed

    job = ClassifierJob(config, arrays, labels, class_names, validation, device)
    ctx = distributed.context(device)
    if ctx is not None:
        ctx.broadcast(("classify", job))
    model, history, seconds, stopper, on = _fit(job, ctx, progress)
    version = save_checkpoint(model, config, class_names, out_path, history, on.describe())
    return ClassifierResult(out_path, version, history, seconds, stopper.best_epoch if stopper else None,
                            bool(stopper and stopper.exhausted))


def run_job(ctx, message) -> None:
    """A worker rank's side of one ``train_classifier`` call: train its share of every batch."""
    _fit(message[1], ctx, None)


def _fit(job: ClassifierJob, ctx, progress: Callable[[int, int], None] | None):
    """The training loop of every rank: (model, history, seconds, early stopper, device plan)."""
    from annotator.segmentation.distributed import wrap

    config, arrays, labels = job.config, job.arrays, job.labels
    world, rank = (ctx.world_size, ctx.rank) if ctx is not None else (1, 0)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_network(config.arch, len(job.class_names), Path(config.weights_path) if config.weights_path else None)
    on = training_plan(ctx.device if ctx is not None else resolve_device(job.device))  # the device plan
    apply_plan(on)
    model = model.to(on.device, memory_format=torch.channels_last if on.channels_last else torch.preserve_format)
    net = wrap(model, ctx, sync_batchnorm=True)  # the model itself in one process
    model = net.module if ctx is not None else net
    scaler = on.scaler()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    plan = balance_plan(labels, seed=config.seed, cap=config.balance_cap) if config.balance else [(i, IDENTITY) for i in range(len(labels))]
    steps_per_epoch = (len(plan) + config.batch_size - 1) // config.batch_size
    total = steps_per_epoch * config.epochs
    history: list[dict] = []
    start = time.perf_counter()
    step = 0
    validation = job.validation
    stopper = _Plateau(model, optimiser, config) if validation is not None and len(validation[0]) else None

    def over_budget() -> bool:
        elapsed = time.perf_counter() - start
        if ctx is not None:
            elapsed = ctx.max(elapsed)  # every rank stops at the same step
        return config.max_train_s is not None and elapsed > config.max_train_s

    net.train()
    for epoch in range(config.epochs):
        order = rng.permutation(len(plan))
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(steps_per_epoch):
            batch = [plan[i] for i in order[b * config.batch_size : (b + 1) * config.batch_size]]
            if len(batch) < 2 * world:  # BatchNorm needs 2 samples (and every rank a share)
                continue
            share = len(batch) // world
            chunk = batch[rank * share:(rank + 1) * share]  # the whole batch in one process
            x = to_device(_to_tensor(np.stack([augment(arrays[i], aug) for i, aug in chunk])), on)
            y = to_device(torch.tensor([int(labels[i]) for i, _ in chunk]), on)
            optimiser.zero_grad()
            with on.autocast():
                logits = net(x)
            loss = loss_fn(logits.float(), y)
            backward_step(loss, optimiser, scaler)
            loss_sum += loss.item() * len(chunk)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(chunk)
            step += 1
            if progress:
                progress(step, total)
            if over_budget():  # a shared CPU can make one epoch outlast the budget: end mid-epoch
                break
        if ctx is not None:
            loss_sum, correct, seen = ctx.sum([loss_sum, float(correct), float(seen)])
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                        "images": int(seen)})
        if stopper is not None:
            history[-1].update(stopper.score(epoch + 1, *validation, agree=ctx.broadcast if ctx else None))
            net.train()
        log.info("%s epoch %d: %s", config.key, epoch + 1, history[-1])
        if stopper is not None and stopper.exhausted:
            break
        if over_budget():
            log.info("%s: time budget of %.0f s spent in epoch %d", config.key, config.max_train_s, epoch + 1)
            break
    seconds = time.perf_counter() - start
    if stopper is not None:
        model.load_state_dict(stopper.best_state)
    return model, history, seconds, stopper, on


class _Plateau:
    """Section 4.1's schedule on the validation loss: lr / 5 after ``lr_patience`` epochs without a new
    best, stop after ``patience``; remembers the best epoch's weights."""

    def __init__(self, model: nn.Module, optimiser: torch.optim.Optimizer, config: ClassifierConfig):
        self.model = model
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="min", factor=config.lr_factor,
                                                                    patience=config.lr_patience)
        self.optimiser = optimiser
        self.patience = config.patience
        self.best_loss = float("inf")
        self.best_epoch = 0
        self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.since_best = 0

    @property
    def exhausted(self) -> bool:
        return self.since_best >= self.patience

    def score(self, epoch: int, arrays: Sequence[np.ndarray], labels: Sequence[int],
              agree: Callable | None = None) -> dict:
        """The epoch's validation loss and accuracy; ``agree`` (rank 0's value on every rank, under DDP)
        makes every process take the same schedule step."""
        proba = predict_arrays(self.model, arrays)
        truth = np.asarray(labels, dtype=np.int64)
        loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-12, None))))
        if agree is not None:
            loss = agree(loss)
        lr = self.optimiser.param_groups[0]["lr"]
        self.scheduler.step(loss)
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.since_best = loss, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.since_best += 1
        return {"val_loss": loss, "val_accuracy": float(np.mean(proba.argmax(1) == truth)), "lr": lr}


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


@torch.inference_mode()
def predict_arrays(model: nn.Module, arrays: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities, N x classes (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for b in range(0, len(arrays), batch_size):
        x = _to_tensor(np.stack(arrays[b : b + batch_size])).to(device)
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
