"""Step: the classifiers of every scheme, network, input mode and compared preprocessing (Tables 4, 9, 10),
by stratified patient-grouped cross-validation; per scheme the best configuration's fold-0 model is deployed.
Every fold writes its checkpoint and out-of-fold probabilities and is skipped on a re-run with the same
settings and data."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from annotator.evaluation import plots
from annotator.evaluation.crossval import stratified_group_folds
from annotator.evaluation.metrics import classification_report, confusion_matrix
from annotator.evaluation.roc import one_vs_rest
from annotator.evaluation.tables import MIN_TEST_IMAGES, Table, classification_columns, classification_rows
from annotator.progress import progress_bar
from annotator.recognition.classifier import (
    Classifier,
    ClassifierConfig,
    get_architecture,
    predict_arrays,
    train_classifier,
)
from annotator.recognition.config import CLASS_SCHEMES
from annotator.recognition.dataset import Sample, select_scheme
from annotator.recognition.preprocessing import prepare
from annotator.recognition.steps.context import RunContext, digest
from annotator.recognition.steps.lung import LungNetwork

TrainedClassifiers = dict[tuple[str, str], Path]  # (scheme, config key) -> fold-0 checkpoint


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
                            weight_decay=cs.weight_decay, balance=cs.balance, balance_cap=cs.balance_cap,
                            seed=cs.seed, weights_path=weights)


def classifier_plan(ctx: RunContext) -> list[tuple[str, list[str], ClassifierConfig]]:
    """(scheme, the tables it feeds, config) in run order; a configuration is trained once per scheme."""
    config = ctx.config
    plan: dict[tuple[str, str], tuple[str, list[str], ClassifierConfig]] = {}

    def add(scheme: str, table: str, cfg: ClassifierConfig) -> None:
        plan.setdefault((scheme, cfg.key), (scheme, [], cfg))[1].append(table)

    if "covid-pneumonia-normal" in config.schemes:
        for p in config.compare_preprocessing:
            add("covid-pneumonia-normal", "preprocessing", classifier_config(ctx, config.compare_network, p, "plain"))
    for scheme in config.schemes:
        for arch in config.networks:
            for mode in config.input_modes:
                add(scheme, scheme, classifier_config(ctx, arch, config.preprocessing, mode))
    return list(plan.values())


def _arrays(ctx: RunContext, lungs: LungNetwork, items: Sequence[Sample], cfg: ClassifierConfig,
            cache: dict) -> list[np.ndarray]:
    store = cache.setdefault((cfg.preprocessing, cfg.input_mode, cfg.input_size_px), {})
    if cfg.input_mode == "segmented":
        lungs.predict(items)
    for s in items:
        if s.key not in store:
            mask = lungs.masks[s.key] if cfg.input_mode == "segmented" else None
            store[s.key] = prepare(ctx.pixels(s), cfg.preprocessing, cfg.input_size_px, mask)
    return [store[s.key] for s in items]


def _scheme_folds(ctx: RunContext) -> dict[str, tuple[list[Sample], list[int], list[np.ndarray]]]:
    config = ctx.config
    out = {}
    for scheme in config.schemes:
        names = CLASS_SCHEMES[scheme]
        items, labels = select_scheme(ctx.samples, names, scheme)
        folds = stratified_group_folds(labels, [s.group for s in items], config.folds, config.seed)
        counts = Counter(labels)
        small = [names[c] for c in range(len(names)) if counts.get(c, 0) < config.folds]
        if small:
            ctx.note(f"Scheme {scheme}: classes {small} have fewer images than folds ({config.folds}); "
                     "some training folds lack them and their figures read 'too few to measure'.")
        out[scheme] = (items, labels, folds)
        ctx.note(f"Scheme {scheme}: {len(items)} images ({', '.join(f'{names[c]} {n}' for c, n in sorted(counts.items()))}), "
                 f"{config.folds}-fold cross-validation grouped by patient.")
    return out


def _tables(ctx: RunContext) -> dict[str, Table]:
    config = ctx.config
    tables = {"preprocessing": Table("Preprocessing schemes, COVID-19 / non-COVID pneumonia / normal, "
                                     f"{config.compare_network}, plain input (Table 4)",
                                     classification_columns(["preprocessing"]))}
    for scheme in config.schemes:
        number = {"covid-pneumonia-normal": "Table 9", "covid-sars-mers": "Table 10"}.get(scheme, "")
        tables[scheme] = Table(f"Classification {' / '.join(CLASS_SCHEMES[scheme])}: networks x input ({number})",
                               classification_columns(["network", "input"]))
    return tables


def train_classifiers(ctx: RunContext, lungs: LungNetwork) -> TrainedClassifiers:
    config, report = ctx.config, ctx.report
    plan = classifier_plan(ctx)
    scheme_data = _scheme_folds(ctx)
    tables = _tables(ctx)
    trained: TrainedClassifiers = {}
    cache: dict = {}
    with progress_bar("classifiers (folds)", total=len(plan) * config.folds, enabled=ctx.progress, unit="folds") as bar:
        for scheme, table_names, cfg in plan:
            items, labels, folds = scheme_data[scheme]
            names = CLASS_SCHEMES[scheme]
            arrays = _arrays(ctx, lungs, items, cfg, cache)
            proba = np.zeros((len(items), len(names)), dtype=np.float64)
            out_dir = ctx.work_path / "classifiers" / scheme / cfg.key
            data_id = digest([s.key for s in items])
            for k, test_idx in enumerate(folds):
                done = out_dir / f"fold-{k}.json"
                ckpt = out_dir / f"fold-{k}.pt"
                if done.is_file() and ckpt.is_file():
                    saved = json.loads(done.read_text())
                    if saved.get("config") == cfg.fingerprint() and saved.get("data") == data_id:
                        proba[test_idx] = np.asarray(saved["proba"])
                        bar.advance()
                        continue
                train_idx = np.setdiff1d(np.arange(len(items)), test_idx)
                with progress_bar(f"{scheme} {cfg.key} fold {k + 1}/{len(folds)}", enabled=ctx.progress,
                                  unit="steps") as fold_bar:
                    res = train_classifier(cfg, [arrays[i] for i in train_idx], [labels[i] for i in train_idx],
                                           names, ckpt, progress=lambda d, t: fold_bar.update(completed=d, total=t),
                                           device=ctx.device)
                model = Classifier.from_checkpoint(ckpt, ctx.device).model
                proba[test_idx] = predict_arrays(model, [arrays[i] for i in test_idx])
                done.write_text(json.dumps({"config": cfg.fingerprint(), "data": data_id, "model_version": res.model_version,
                                            "proba": proba[test_idx].tolist(), "history": res.history,
                                            "train_s": res.train_seconds}))
                bar.advance()
            trained[(scheme, cfg.key)] = out_dir / "fold-0.pt"
            cm = confusion_matrix(labels, proba.argmax(1), len(names))
            scores = classification_report(cm, names)
            curves = one_vs_rest(labels, proba, names)
            tag = f"{scheme}_{cfg.key}"
            report.plot(plots.plot_confusion(cm, names, report.report_path / f"confusion_{tag}.png", f"{cfg.key}"))
            report.plot(plots.plot_roc(curves, report.report_path / f"roc_{tag}.png", f"{scheme}: {cfg.key}"))
            if "preprocessing" in table_names:
                classification_rows(tables["preprocessing"], scores, names, prefix=[cfg.preprocessing])
            if scheme in table_names:
                classification_rows(tables[scheme], scores, names, prefix=[cfg.arch, cfg.input_mode])
            report.results.setdefault("classification", {}).setdefault(scheme, {})[cfg.key] = {
                "tables": table_names, "confusion": cm.tolist(), "report": scores,
                "auc": {c: curves[c]["auc"] for c in names}}
    cache.clear()
    for name, table in tables.items():
        if not table.rows:
            continue
        table.note = ("Confusion matrix summed over the test folds of stratified patient-grouped "
                      f"{config.folds}-fold cross-validation; n per class = its images; 95% intervals; "
                      f"classes under {MIN_TEST_IMAGES} images read 'too few to measure'. Segmented input = "
                      "the lung network's predicted masks (the lung network saw the training-split images).")
        report.table(name, table)
    _deploy(ctx, trained)
    return trained


def _deploy(ctx: RunContext, trained: TrainedClassifiers) -> None:
    """Per scheme, the configuration of Tables 9-10 with the best weighted F1; its fold-0 model."""
    report = ctx.report
    for scheme, configs in report.results.get("classification", {}).items():
        candidates = [(k, v) for k, v in configs.items() if scheme in v["tables"]]
        if not candidates:
            continue
        key, best = max(candidates, key=lambda kv: np.nan_to_num(kv[1]["report"]["overall"]["f1"], nan=-1))
        path = trained[(scheme, key)]
        report.manifest["classifiers"][scheme] = str(path.relative_to(ctx.work_path))
        clf = Classifier.from_checkpoint(path, ctx.device)
        report.register("classifier", clf.config.arch, path, clf.model_version,
                        {"scheme": scheme, "config": key, "cv_overall": best["report"]["overall"]})
        ctx.note(f"Deployed for {scheme}: {key} (fold-0 model, best weighted F1 in cross-validation).")
