"""Shared parts of the classification studies (steps ``study1``: COVID/SARS/MERS by cross-validation, Table 4;
``study2``: COVID-19/pneumonia/normal on the test split, Tables 9-10): the per-network configuration, the
prepared inputs, one resumable training with a validation set (section 4.1), and one scored evaluation.

Every training writes its checkpoint and a JSON beside it and is skipped on a re-run with the same
settings and data."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.evaluation import plots
from annotator.evaluation.metrics import classification_report, confusion_matrix
from annotator.evaluation.roc import one_vs_rest
from annotator.progress import progress_bar
from annotator.recognition.classifier import (
    Classifier,
    ClassifierConfig,
    get_architecture,
    predict_arrays,
)
from annotator.recognition.dataset import Sample
from annotator.recognition.preprocessing import prepare
from annotator.recognition.steps.context import RunContext, digest
from annotator.recognition.steps.lung import LungNetwork
from annotator.recognition.training import train_classifier


@dataclass
class Evaluation:
    """One configuration scored on labelled images: per image its probabilities and the checkpoint that
    made them (a fold's model in cross-validation), and the figures."""

    scheme: str
    config: ClassifierConfig
    class_names: tuple[str, ...]
    items: list[Sample]
    labels: list[int]
    proba: np.ndarray
    checkpoints: list[Path]
    tables: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    aucs: dict = field(default_factory=dict)

    @property
    def f1(self) -> float:
        return float(np.nan_to_num(self.report["overall"]["f1"], nan=-1.0))


@dataclass
class Classifiers:
    """What the studies produced: every evaluation, and per scheme the deployed checkpoint."""

    evaluations: list[Evaluation] = field(default_factory=list)
    deployed: dict[str, Path] = field(default_factory=dict)


def classifier_config(ctx: RunContext, arch: str, preprocessing: str, mode: str) -> ClassifierConfig:
    cs = ctx.config.classifier
    size = cs.input_size_px or get_architecture(arch).paper_input_px
    weights = None
    if cs.weights_dir:
        candidate = Path(cs.weights_dir) / f"{arch}.pt"
        weights = str(candidate) if candidate.is_file() else None
    return ClassifierConfig(arch=arch, input_size_px=max(size, get_architecture(arch).min_input_px),
                            preprocessing=preprocessing, input_mode=mode, epochs=cs.epochs,
                            batch_size=cs.batch_size, learning_rate=cs.learning_rate,
                            weight_decay=cs.weight_decay, max_train_s=cs.max_train_s, balance=cs.balance,
                            balance_cap=cs.balance_cap, seed=cs.seed, weights_path=weights)


def cap_per_class(items: Sequence[Sample], cap: int | None) -> list[Sample]:
    """At most ``cap`` items per class: every k-th of the class' key-sorted list (stratified, fixed)."""
    if cap is None:
        return list(items)
    by_class: dict[str | None, list[Sample]] = defaultdict(list)
    for s in sorted(items, key=lambda s: s.key):
        by_class[s.cls].append(s)
    out = []
    for members in by_class.values():
        out += members if len(members) <= cap else [members[int(i * len(members) / cap)] for i in range(cap)]
    return out


class Inputs:
    """Prepared classifier inputs, computed once per (preprocessing, input mode, size) and image."""

    def __init__(self, ctx: RunContext, lungs: LungNetwork):
        self.ctx, self.lungs, self.store = ctx, lungs, {}

    def __call__(self, items: Sequence[Sample], cfg: ClassifierConfig) -> list[np.ndarray]:
        store = self.store.setdefault((cfg.preprocessing, cfg.input_mode, cfg.input_size_px), {})
        if cfg.input_mode == "segmented":
            self.lungs.predict(items)
        for s in items:
            if s.key not in store:
                mask = self.lungs.masks[s.key] if cfg.input_mode == "segmented" else None
                store[s.key] = prepare(self.ctx.pixels(s), cfg.preprocessing, cfg.input_size_px, mask)
        return [store[s.key] for s in items]


def fit(ctx: RunContext, inputs: Inputs, cfg: ClassifierConfig, names: Sequence[str], train: Sequence[Sample],
        ckpt: Path) -> Path:
    """Train ``cfg`` on ``train`` (capped per class; a grouped validation part of it drives early stopping
    and the learning rate) and save ``ckpt``; a finished training with the same settings and data is kept."""
    fit_items, val_items = ctx.fit_validation(train)
    fit_items = cap_per_class(fit_items, ctx.config.max_train_per_class)
    cap = ctx.config.max_train_per_class
    val_items = cap_per_class(val_items, None if cap is None else max(2, cap // 4))
    index = {c: i for i, c in enumerate(names)}
    done = ckpt.with_suffix(".json")
    data_id = digest([s.key for s in fit_items] + ["|"] + [s.key for s in val_items])
    if done.is_file() and ckpt.is_file():
        saved = json.loads(done.read_text())
        if saved.get("config") == cfg.fingerprint() and saved.get("data") == data_id:
            return ckpt
    validation = (inputs(val_items, cfg), [index[s.cls] for s in val_items]) if val_items else None
    with progress_bar(f"{cfg.key} ({len(fit_items)} images)", enabled=ctx.progress, unit="steps") as bar:
        res = train_classifier(cfg, inputs(fit_items, cfg), [index[s.cls] for s in fit_items], names, ckpt,
                               progress=lambda d, t: bar.update(completed=d, total=t), validation=validation,
                               device=inputs.ctx.device)
    done.write_text(json.dumps({"config": cfg.fingerprint(), "data": data_id, "model_version": res.model_version,
                                "fit": len(fit_items), "validation": len(val_items), "best_epoch": res.best_epoch,
                                "stopped_early": res.stopped_early, "history": res.history,
                                "train_s": res.train_seconds}))
    return ckpt


def predict(inputs: Inputs, cfg: ClassifierConfig, items: Sequence[Sample], ckpt: Path) -> np.ndarray:
    return predict_arrays(Classifier.from_checkpoint(ckpt, inputs.ctx.device).model, inputs(items, cfg))


def score(ctx: RunContext, ev: Evaluation, table: str) -> Evaluation:
    """The evaluation's confusion matrix, report and ROC (plots and results.json)."""
    names, report = ev.class_names, ctx.report
    cm = confusion_matrix(ev.labels, ev.proba.argmax(1), len(names))
    ev.report = classification_report(cm, names)
    curves = one_vs_rest(ev.labels, ev.proba, names)
    ev.aucs = {c: curves[c]["auc"] for c in names}
    ev.tables.append(table)
    tag = f"{ev.scheme}_{ev.config.key}"
    report.plot(plots.plot_confusion(cm, names, report.report_path / f"confusion_{tag}.png", ev.config.key))
    report.plot(plots.plot_roc(curves, report.report_path / f"roc_{tag}.png", f"{ev.scheme}: {ev.config.key}"))
    report.results.setdefault("classification", {}).setdefault(ev.scheme, {})[ev.config.key] = {
        "tables": ev.tables, "confusion": cm.tolist(), "report": ev.report, "auc": ev.aucs}
    return ev


def deploy(ctx: RunContext, scheme: str, path: Path, how: str) -> None:
    clf = Classifier.from_checkpoint(path, ctx.device)
    ctx.report.manifest["classifiers"][scheme] = str(path.relative_to(ctx.work_path))
    ctx.report.register("classifier", clf.config.arch, path, clf.model_version, {"scheme": scheme, "config": clf.config.key})
    ctx.note(f"Deployed for {scheme}: {clf.config.key} ({how}).")
