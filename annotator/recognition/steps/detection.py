"""Step: COVID-19 detection on the test split, positive when at least one lung pixel is infected (Table 8)."""

from __future__ import annotations

from annotator.evaluation import plots
from annotator.evaluation.metrics import classification_report, confusion_matrix
from annotator.evaluation.tables import Table, classification_columns, classification_rows
from annotator.recognition.config import CLASS_SCHEMES, INFECTION_CONFIGURATIONS
from annotator.recognition.quantification import quantify
from annotator.recognition.steps.context import RunContext
from annotator.recognition.steps.infection import InfectionNetworks

DETECTION_CLASSES = ("COVID-19", "non-COVID")


def evaluate_detection(ctx: RunContext, infection: InfectionNetworks) -> None:
    classes = CLASS_SCHEMES["covid-pneumonia-normal"]
    test = [s for s in ctx.samples if ctx.is_test(s) and s.cls in classes]
    report = ctx.report
    table = Table("COVID-19 detection on the test split: infected lung pixel present (Table 8)",
                  classification_columns(["configuration"]))
    for conf in INFECTION_CONFIGURATIONS:
        probs = infection.proba(test, conf)
        lung_masks = infection.lungs.masks
        predicted = [0 if quantify(lung_masks[s.key], p).covid_positive else 1 for s, p in zip(test, probs, strict=True)]
        truth = [0 if s.cls == "covid" else 1 for s in test]
        cm = confusion_matrix(truth, predicted, 2)
        scores = classification_report(cm, DETECTION_CLASSES)
        classification_rows(table, scores, DETECTION_CLASSES, prefix=[conf])
        report.plot(plots.plot_confusion(cm, DETECTION_CLASSES, report.report_path / f"confusion_detection_{conf}.png",
                                         f"detection ({conf})"))
        report.results.setdefault("detection", {})[conf] = {"confusion": cm.tolist(), "report": scores}
    table.note = (f"n = {len(test)} test images of the classes {list(classes)}; positive = at least one lung pixel "
                  "with infection p > 0.5.")
    report.table("detection", table)
