"""Checkpoints that describe themselves: spec, preset, training config, data snapshot, metrics, history
and the weights; ``model_version`` = spec name + a short hash of the weights."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from annotator.durability import replace_durably
from annotator.errors import ModelError
from annotator.segmentation.registry import ModelSpec

FORMAT = "cxr-annotator-segmentation/1"
REQUIRED_KEYS = ("format", "spec", "model_version", "state_dict")


def weights_hash(state_dict: dict) -> str:
    """sha256 over the tensors' names and bytes, in key order (stable across save/load)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key]
        h.update(key.encode())
        h.update(np.ascontiguousarray(tensor.detach().cpu().float().numpy()).tobytes())
    return h.hexdigest()


def make_model_version(spec: ModelSpec, state_dict: dict) -> str:
    return f"{spec.name}-{weights_hash(state_dict)[:10]}"


@dataclass
class Checkpoint:
    spec: ModelSpec
    model_version: str
    state_dict: dict
    preset: str | None = None
    train_config: dict = field(default_factory=dict)
    snapshot: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    created_at: str = ""
    path: Path | None = None

    def describe(self) -> dict:
        """Everything but the weights (JSON-friendly)."""
        return {"format": FORMAT, "model_version": self.model_version, "spec": self.spec.to_dict(),
                "preset": self.preset, "train_config": self.train_config, "snapshot": self.snapshot,
                "metrics": self.metrics, "history": self.history, "created_at": self.created_at}


def save_checkpoint(path: Path | str, spec: ModelSpec, state_dict: dict, *, preset: str | None = None,
                    train_config: dict | None = None, snapshot: dict | None = None, metrics: dict | None = None,
                    history: list | None = None) -> Checkpoint:
    """Write atomically; returns the Checkpoint with its model_version."""
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    ckpt = Checkpoint(spec=spec, model_version=make_model_version(spec, state), state_dict=state, preset=preset,
                      train_config=train_config or {}, snapshot=snapshot or {}, metrics=metrics or {},
                      history=history or [], created_at=datetime.now(timezone.utc).isoformat(), path=path)
    payload = ckpt.describe() | {"state_dict": state}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    replace_durably(tmp, path)
    return ckpt


def load_checkpoint(path: Path | str, expect_spec: str | None = None) -> Checkpoint:
    """Read a checkpoint; a missing, corrupt or foreign file, or one of another spec, is a ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ModelError(f"checkpoint {path} is corrupt or not a torch file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED_KEYS):
        raise ModelError(f"checkpoint {path} is not a cxr-annotator segmentation checkpoint (no spec/model_version)")
    if payload["format"] != FORMAT:
        raise ModelError(f"checkpoint {path} has format {payload['format']!r}; this version reads {FORMAT!r}")
    spec = ModelSpec.from_dict(payload["spec"])
    if expect_spec is not None and spec.name != expect_spec:
        raise ModelError(f"checkpoint {path} is a {spec.name}, not a {expect_spec}")
    return Checkpoint(spec=spec, model_version=payload["model_version"], state_dict=payload["state_dict"],
                      preset=payload.get("preset"), train_config=payload.get("train_config") or {},
                      snapshot=payload.get("snapshot") or {}, metrics=payload.get("metrics") or {},
                      history=payload.get("history") or [], created_at=payload.get("created_at", ""), path=path)


def load_network(ckpt: Checkpoint) -> torch.nn.Module:
    """The checkpoint's network in eval mode; weights that do not fit its spec are a ModelError."""
    from annotator.segmentation.factory import build_model

    model = build_model(ckpt.spec)
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        raise ModelError(f"checkpoint {ckpt.path} weights do not fit its spec {ckpt.spec.name}: "
                         f"{str(exc).splitlines()[0]}") from exc
    return model.eval()
