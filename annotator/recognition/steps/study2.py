"""Step: Study II, COVID-19 / non-COVID pneumonia / normal (Tables 9-10), on the protocol's splits: every
network and input trained on the training split (cut 80/20 into fit and validation, section 4.1) and scored
once on the test split (Stage IV's verified set when the workspace has one). The lung network that makes the
segmented inputs was trained on the training split too, so no test image was seen by any network."""

from __future__ import annotations

from annotator.errors import TrainingError
from annotator.evaluation.tables import MIN_TEST_IMAGES, Table, classification_columns, classification_rows
from annotator.recognition.config import CLASS_SCHEMES
from annotator.recognition.dataset import select_scheme
from annotator.recognition.steps import classification as step
from annotator.recognition.steps.context import RunContext

SCHEME = "covid-pneumonia-normal"


def run_study2(ctx: RunContext, inputs: step.Inputs, out: step.Classifiers) -> None:
    config, report = ctx.config, ctx.report
    if SCHEME not in config.schemes:
        return
    names = CLASS_SCHEMES[SCHEME]
    items, _ = select_scheme(ctx.samples, names, SCHEME)
    train = [s for s in items if not ctx.is_test(s)]
    test = [s for s in items if ctx.is_test(s)]
    if not test or len({s.cls for s in train}) < 2:
        raise TrainingError(f"Study II needs test and training images of {list(names)}: the split has {len(train)} "
                            f"training and {len(test)} test images of them")
    fit_items, val_items = ctx.fit_validation(train)
    for name, part in (("study2_fit", fit_items), ("study2_validation", val_items), ("study2_test", test)):
        ctx.record_split(name, part)
    protocol = all(s.split in ("train", "val") for s in train)
    ctx.note(f"Study II ({SCHEME}): trained on {len(train)} training-split images ({len(fit_items)} fit, "
             f"{len(val_items)} validation: {'the protocol' if protocol else 'a patient-grouped'} 80/20), scored on "
             f"the {len(test)} test-split images"
             + (f"; training sets capped at {config.max_train_per_class} images a class (a CPU budget)."
                if config.max_train_per_class else "."))
    index = {c: i for i, c in enumerate(names)}
    labels = [index[s.cls] for s in test]
    evaluations: dict[str, list[step.Evaluation]] = {}
    for arch in config.networks:
        for mode in config.input_modes:
            cfg = step.classifier_config(ctx, arch, config.preprocessing, mode)
            ckpt = step.fit(ctx, inputs, cfg, names, train, ctx.work_path / "classifiers" / SCHEME / cfg.key / "model.pt")
            ev = step.Evaluation(SCHEME, cfg, names, test, labels, step.predict(inputs, cfg, test, ckpt), [ckpt] * len(test))
            evaluations.setdefault(arch, []).append(step.score(ctx, ev, "table_10"))
    table10 = Table("COVID-19 / non-COVID pneumonia / normal per network, input and class, test split (Table 10)",
                    classification_columns(["network", "input"], auc=True))
    for arch, evs in evaluations.items():
        for ev in evs:
            classification_rows(table10, ev.report, names, [arch, ev.config.input_mode], ev.aucs)
    best_arch = max(evaluations, key=lambda a: max(ev.f1 for ev in evaluations[a]))
    table9 = Table(f"COVID-19 / non-COVID pneumonia / normal, plain vs segmented, {best_arch} (Table 9)",
                   classification_columns(["network", "input"], auc=True))
    for ev in evaluations[best_arch]:
        ev.tables.append("table_09")
        classification_rows(table9, ev.report, names, [best_arch, ev.config.input_mode], ev.aucs)
    note = (f"n = the test split's images per class (intervals, eq. 8, over all {len(test)}; SARS, MERS and "
            "tuberculosis count as non-COVID pneumonia, so every test image is sorted); classes under "
            f"{MIN_TEST_IMAGES} read 'too few to measure'. Preprocessing {config.preprocessing}. Segmented = the "
            "deployed lung network's masks (trained on the training split only).")
    table10.note = note
    table9.note = note + f" Best network = the best weighted F1 of Table 10: {best_arch}."
    report.table("covid-pneumonia-normal-networks", table10)
    report.table("covid-pneumonia-normal", table9)
    all_evs = [ev for evs in evaluations.values() for ev in evs]
    out.evaluations += all_evs
    best = max(all_evs, key=lambda ev: ev.f1)
    out.deployed[SCHEME] = best.checkpoints[0]
    step.deploy(ctx, SCHEME, best.checkpoints[0], f"best weighted F1 on the test split; trained on the whole training split")
