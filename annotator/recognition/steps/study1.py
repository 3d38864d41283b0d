"""Step: Study I, COVID-19 / SARS / MERS (Table 4), by stratified patient-grouped k-fold cross-validation
as the thesis ran it: per network, every compared preprocessing on the plain input, the best (weighted F1)
also on the lung-segmented input; each training fold keeps a validation part for early stopping. The best
configuration is then trained on all of the scheme's images and deployed."""

from __future__ import annotations

from collections import Counter

import numpy as np

from annotator.evaluation.crossval import stratified_group_folds
from annotator.evaluation.tables import MIN_TEST_IMAGES, Table, classification_columns, classification_rows, percent
from annotator.recognition.config import CLASS_SCHEMES
from annotator.recognition.dataset import select_scheme
from annotator.recognition.steps.classification import (
    Classifiers,
    Evaluation,
    Inputs,
    classifier_config,
    deploy,
    fit,
    predict,
    score,
)
from annotator.recognition.steps.context import RunContext

SCHEME = "covid-sars-mers"


def run_study1(ctx: RunContext, inputs: Inputs, out: Classifiers) -> None:
    config, report = ctx.config, ctx.report
    if SCHEME not in config.schemes:
        return
    names = CLASS_SCHEMES[SCHEME]
    items, labels = select_scheme(ctx.samples, names, SCHEME)
    folds = stratified_group_folds(labels, [s.group for s in items], config.folds, config.seed)
    for k, idx in enumerate(folds):
        ctx.record_split(f"study1_fold_{k}", [items[i] for i in idx])
    counts = Counter(labels)
    ctx.note(f"Study I ({SCHEME}): {len(items)} images ({', '.join(f'{names[c]} {n}' for c, n in sorted(counts.items()))}), "
             f"{config.folds}-fold cross-validation grouped by patient; each training fold keeps a patient-grouped "
             f"{config.validation_share:.0%} validation part"
             + (f"; training sets capped at {config.max_train_per_class} images a class (a CPU budget)."
                if config.max_train_per_class else "."))
    small = [names[c] for c in range(len(names)) if counts.get(c, 0) < config.folds]
    if small:
        ctx.note(f"Study I: classes {small} have fewer images than folds ({config.folds}); some training folds lack "
                 "them and their figures read 'too few to measure'.")

    def cross_validate(arch: str, preprocessing: str, mode: str) -> Evaluation:
        cfg = classifier_config(ctx, arch, preprocessing, mode)
        proba = np.zeros((len(items), len(names)))
        paths = [None] * len(items)
        for k, test_idx in enumerate(folds):
            held = set(test_idx.tolist())
            ckpt = fit(ctx, inputs, cfg, names, [s for i, s in enumerate(items) if i not in held],
                       ctx.work_path / "classifiers" / SCHEME / cfg.key / f"fold-{k}.pt")
            proba[test_idx] = predict(inputs, cfg, [items[i] for i in test_idx], ckpt)
            for i in test_idx:
                paths[i] = ckpt
        return score(ctx, Evaluation(SCHEME, cfg, names, items, labels, proba, paths), "table_04")

    table = Table("COVID-19 / SARS / MERS per network, best preprocessing, plain and segmented input (Table 4)",
                  classification_columns(["network", "input", "preprocessing"], auc=True))
    search = Table("Study I: preprocessing per network, plain input, weighted overall (Table 4's choice)",
                   ["network", "preprocessing", "n", "accuracy %", "f1 %"])
    chosen: list[Evaluation] = []
    for arch in config.networks:
        tried = [cross_validate(arch, p, "plain") for p in config.compare_preprocessing]
        for ev in tried:
            ov = ev.report["overall"]
            search.add(arch, ev.config.preprocessing, ov["n"], percent(ov["accuracy"], ov["accuracy_ci"], ov["n"]),
                       percent(ov["f1"], ov["f1_ci"], ov["n"]))
        best = max(tried, key=lambda ev: ev.f1)
        rows = [best] + [cross_validate(arch, best.config.preprocessing, m) for m in config.input_modes if m != "plain"]
        for ev in rows:
            classification_rows(table, ev.report, names, [arch, ev.config.input_mode, ev.config.preprocessing], ev.aucs)
        chosen += rows
    out.evaluations += chosen
    table.note = (f"Confusion matrix summed over the test folds of {config.folds}-fold cross-validation (grouped by "
                  f"patient); n per class = its images, intervals (eq. 8) over all {len(items)} images; classes "
                  f"under {MIN_TEST_IMAGES} images read 'too few to measure'. Preprocessing: the best weighted F1 "
                  "on the plain input (see table_04_preprocessing_search). Segmented = the deployed lung network's masks.")
    report.table("covid-sars-mers", table)
    report.table("preprocessing_search", search)
    best = max(chosen, key=lambda ev: ev.f1)
    ckpt = fit(ctx, inputs, best.config, names, items, ctx.work_path / "classifiers" / SCHEME / best.config.key / "all.pt")
    out.deployed[SCHEME] = ckpt
    deploy(ctx, SCHEME, ckpt, f"best weighted F1 in cross-validation, then trained on all {len(items)} images "
                              "with a validation part")
