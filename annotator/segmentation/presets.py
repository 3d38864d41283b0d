"""How a segmentation network is trained: ``TrainConfig`` (the thesis' setting by default) and its named
presets: ``paper``, ``quick`` (two CPU cores), ``demo``, ``smoke`` and ``tiny`` (tests). Torch-free, so
the protocol's stages and the CLI read them without loading the training engine (``train.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from annotator.errors import UnknownNameError


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained. Defaults are the thesis' (preset ``paper``)."""

    name: str = "paper"
    input_size_px: int = 256
    batch_size: int = 4
    max_epochs: int = 40
    lr: float = 1e-4
    fine_tune_lr: float | None = None  # the starting lr when training from given weights (None: lr)
    betas: tuple[float, float] = (0.9, 0.999)
    lr_factor: float = 0.2  # divided by 5 ...
    lr_patience: int = 3  # ... after 3 epochs without validation-loss improvement
    early_stop_patience: int = 8
    rotation_deg: float = 25.0
    translate: float = 0.10
    loss: str = "ce"  # "ce" (two-class softmax cross-entropy) | "ce+dice"
    schedule: str = "plateau"  # "plateau" (the thesis) | "cosine" (to min_lr over max_epochs or max_train_s)
    min_lr: float = 1e-5
    bf16: bool = False  # bf16 autocast on CPU
    channels_last: bool = False
    seed: int = 0
    max_train_s: float | None = None  # wall-clock budget for the epochs; None: no limit
    min_steps_per_epoch: int = 1  # tiny sets repeat a few images so BatchNorm statistics settle
    verify_fast_paths: bool = True  # measure bf16 / ONNX against fp32 on validation images after training
    fast_path_images: int = 16

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data


PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    # Two CPU cores: 128 px input (4x fewer pixels than 256; masks are mapped back to full size), batch 4,
    # lr 1e-3 (from scratch) with a cosine decay that ends at the epoch limit or at the time budget,
    # whichever comes first, CE + soft Dice (converges in fewer epochs), bf16 autocast + channels_last
    # (2.4x faster steps), milder augmentation, 8 minutes per network (Stage I shares 24 minutes among
    # its three; see workflows/stage1.py). On a quiet machine U-Net-ResNet18 runs its 40 epochs in about
    # 6 minutes (~9 s per epoch of 308 images, 2 threads); on a shared one the time budget ends it sooner.
    # Fine-tuning (Stage II rounds, Stage III's main network) starts at 3e-4, gentler on trained weights than
    # 1e-3; and train_model keeps the starting weights when no epoch beats them on validation.
    "quick": TrainConfig(name="quick", input_size_px=128, batch_size=4, max_epochs=40, lr=1e-3, fine_tune_lr=3e-4,
                         lr_patience=3, early_stop_patience=8, rotation_deg=10.0, translate=0.06, loss="ce+dice",
                         bf16=True, channels_last=True, max_train_s=480.0, schedule="cosine"),
    # `annotator demo`: the quick setting with 90 s a network, so the demo's ~14 trainings (Stage I's three,
    # a fine-tune per round, Stage III's six and the main one) fit its 45 minutes on two cores.
    "demo": TrainConfig(name="demo", input_size_px=128, batch_size=4, max_epochs=12, lr=1e-3, fine_tune_lr=3e-4,
                        lr_patience=3, early_stop_patience=6, rotation_deg=10.0, translate=0.06, loss="ce+dice",
                        bf16=True, channels_last=True, max_train_s=90.0, schedule="cosine", fast_path_images=8),
    # End-to-end tests of the protocol (the demo on a small subset): two short epochs, no fast-path check.
    "smoke": TrainConfig(name="smoke", input_size_px=64, batch_size=4, max_epochs=2, lr=3e-3, lr_patience=50,
                         early_stop_patience=50, rotation_deg=0.0, translate=0.0, loss="ce+dice",
                         verify_fast_paths=False, fast_path_images=2),
    # Tests: 64 px, no augmentation, a few dozen steps on two images.
    "tiny": TrainConfig(name="tiny", input_size_px=64, batch_size=2, max_epochs=8, lr=3e-3, lr_patience=50,
                        early_stop_patience=50, rotation_deg=0.0, translate=0.0, loss="ce+dice",
                        min_steps_per_epoch=6, fast_path_images=2),
}


def get_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise UnknownNameError("training preset", name, PRESETS)
    return PRESETS[name]
