"""The architecture x encoder specs: 3 decoders (U-Net, U-Net++, FPN) x 5 encoders = 15 networks.

A ``ModelSpec`` is a frozen description; ``annotator.segmentation.factory.build_model`` turns it into a
network. This module does not import torch, so the CLI can list and validate names without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from annotator.errors import UnknownNameError

# our name -> (smp class, display name)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "unet": ("Unet", "U-Net"),
    "unetplusplus": ("UnetPlusPlus", "U-Net++"),
    "fpn": ("FPN", "FPN"),
}
# our name -> display name; the smp encoder has the same name
ENCODERS: dict[str, str] = {
    "resnet18": "ResNet18",
    "resnet50": "ResNet50",
    "densenet121": "DenseNet121",
    "densenet161": "DenseNet161",
    "inceptionv4": "InceptionV4",
}
ARCH_ALIASES = {"u-net": "unet", "unet++": "unetplusplus", "u-net++": "unetplusplus", "unetpp": "unetplusplus"}

# Trainable parameters (millions) the thesis reports in its Table 11, where we know them.
THESIS_PARAMS_M: dict[str, float] = {"unet-resnet18": 14.32, "fpn-densenet121": 9.29}

# Trainable parameters of each spec as registered (1 gray channel in, 2 classes out, smp's default decoder),
# stored so `model list` answers without building fifteen networks. A test builds each one and checks.
PARAMETERS: dict[str, int] = {
    "unet-resnet18": 14322082,
    "unet-resnet50": 32514978,
    "unet-densenet121": 13601506,
    "unet-densenet161": 38729058,
    "unet-inceptionv4": 48791490,
    "unetplusplus-resnet18": 15964322,
    "unetplusplus-resnet50": 48979618,
    "unetplusplus-densenet121": 30066146,
    "unetplusplus-densenet161": 79047138,
    "unetplusplus-inceptionv4": 59356866,
    "fpn-resnet18": 13041090,
    "fpn-resnet50": 26109890,
    "fpn-densenet121": 9293570,
    "fpn-densenet161": 29488514,
    "fpn-inceptionv4": 43570146,
}


@dataclass(frozen=True)
class ModelSpec:
    """One network: decoder architecture, encoder, input size, channels in (gray: 1), classes out.

    ``classes=2`` is the thesis' two-class softmax (background, lung). ``decoder_channels`` shrinks the
    decoder for tiny test models; None keeps smp's defaults (and the thesis' parameter counts).
    """

    arch: str
    encoder: str
    input_size_px: int = 256
    in_channels: int = 1
    classes: int = 2
    decoder_channels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise UnknownNameError("architecture", self.arch, ARCHITECTURES)
        if self.encoder not in ENCODERS:
            raise UnknownNameError("encoder", self.encoder, ENCODERS)
        if self.input_size_px % 32 or self.input_size_px < 32:
            raise ValueError(f"input_size_px must be a positive multiple of 32, got {self.input_size_px}")

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.encoder}"

    @property
    def display_name(self) -> str:
        return f"{ARCHITECTURES[self.arch][1]}-{ENCODERS[self.encoder]}"

    def with_input_size(self, size_px: int) -> ModelSpec:
        return dataclasses.replace(self, input_size_px=int(size_px))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["name"] = self.name
        if self.decoder_channels is not None:
            data["decoder_channels"] = list(self.decoder_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        if values.get("decoder_channels") is not None:
            values["decoder_channels"] = tuple(values["decoder_channels"])
        return cls(**values)


SPECS: dict[str, ModelSpec] = {
    f"{arch}-{enc}": ModelSpec(arch, enc) for arch in ARCHITECTURES for enc in ENCODERS
}
if set(PARAMETERS) != set(SPECS):  # checked at import: every spec has its stored count, and no stale one
    raise RuntimeError(f"PARAMETERS and SPECS differ: {sorted(set(PARAMETERS) ^ set(SPECS))}")


def normalize_name(name: str) -> str:
    """'U-Net-ResNet18', 'unet_resnet18', 'UNet++-DenseNet121' -> our key."""
    key = name.strip().lower().replace("_", "-")
    for alias, arch in sorted(ARCH_ALIASES.items(), key=lambda kv: -len(kv[0])):
        if key.startswith(alias + "-"):
            return arch + key[len(alias):]
    return key


def get_spec(name: str, input_size_px: int | None = None) -> ModelSpec:
    """The spec named ``name`` (e.g. 'unet-resnet18'); an unknown name lists the 15 valid ones."""
    key = normalize_name(name)
    if key not in SPECS:
        raise UnknownNameError("model spec", name, SPECS)
    spec = SPECS[key]
    return spec.with_input_size(input_size_px) if input_size_px else spec


def list_specs() -> list[ModelSpec]:
    return list(SPECS.values())


def stored_parameters(spec: ModelSpec) -> int | None:
    """The stored trainable-parameter count of ``spec``; None when it is not a registered shape (another
    decoder, channel or class count: build it and count)."""
    registered = SPECS.get(spec.name)
    if registered is None or dataclasses.replace(spec, input_size_px=registered.input_size_px) != registered:
        return None
    return PARAMETERS[spec.name]
