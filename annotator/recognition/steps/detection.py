"""Step: COVID-19 detection on the test split per infection network, positive when at least one lung pixel
is infected (Table 8); the ROC's score is the infected share of the lungs."""

from __future__ import annotations

from annotator.evaluation import plots
from annotator.evaluation.metrics import classification_report, confusion_matrix
from annotator.evaluation.roc import one_vs_rest
from annotator.evaluation.tables import Table, classification_columns, classification_rows
from annotator.recognition.config import CLASS_SCHEMES, scheme_class
from annotator.recognition.quantification import quantify
from annotator.recognition.steps.context import RunContext
from annotator.recognition.steps.infection import InfectionNetworks

DETECTION_CLASSES = ("COVID-19", "non-COVID")
SCHEME = "covid-pneumonia-normal"  # the images detection is scored on: every image this scheme sorts


def evaluate_detection(ctx: RunContext, infection: InfectionNetworks) -> None:
    classes = CLASS_SCHEMES[SCHEME]
    test = [s for s in ctx.samples if ctx.is_test(s) and scheme_class(SCHEME, s.cls) is not None]
    report = ctx.report
    table = Table("COVID-19 detection per infection network on the test split: an infected lung pixel (Table 8)",
                  classification_columns(["network", "configuration"], auc=True))
    truth = [0 if s.cls == "covid" else 1 for s in test]
    for name, conf in infection.predictors:
        if not test:
            break
        probs = infection.proba(test, (name, conf))
        results = [quantify(infection.lungs.masks[s.key], p) for s, p in zip(test, probs, strict=True)]
        predicted = [0 if r.covid_positive else 1 for r in results]
        cm = confusion_matrix(truth, predicted, 2)
        scores = classification_report(cm, DETECTION_CLASSES)
        share = [r.infected_share for r in results]
        curves = one_vs_rest(truth, [[v, -v] for v in share], DETECTION_CLASSES)
        classification_rows(table, scores, DETECTION_CLASSES, prefix=[name, conf],
                            aucs={c: curves[c]["auc"] for c in DETECTION_CLASSES})
        tag = f"{name}_{conf}"
        report.plot(plots.plot_confusion(cm, DETECTION_CLASSES, report.report_path / f"confusion_detection_{tag}.png",
                                         f"detection {name} ({conf})"))
        report.plot(plots.plot_roc(curves, report.report_path / f"roc_detection_{tag}.png", f"detection {name} ({conf})"))
        report.results.setdefault("detection", {})[f"{name} {conf}"] = {
            "confusion": cm.tolist(), "report": scores, "auc": curves["COVID-19"]["auc"]}
    table.note = (f"n = {len(test)} test images of the classes {list(classes)} (SARS, MERS and tuberculosis count as "
                  "non-COVID pneumonia); positive = at least one lung pixel "
                  "with infection p > 0.5; AUC from the infected share of the lungs as the score.")
    report.table("detection", table)
