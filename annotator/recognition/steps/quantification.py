"""Step: the infected share of the lungs against the experts' severity scores (Spearman's rho with n)."""

from __future__ import annotations

import numpy as np

from annotator.evaluation import plots
from annotator.evaluation.correlation import spearman
from annotator.evaluation.tables import MIN_TEST_IMAGES, Table
from annotator.recognition.quantification import quantify
from annotator.recognition.steps.context import RunContext
from annotator.recognition.steps.infection import InfectionNetworks


def evaluate_quantification(ctx: RunContext, infection: InfectionNetworks) -> None:
    scored = [s for s in ctx.samples if s.severity_opacity is not None or s.severity_geographic is not None]
    conf = "-".join(infection.deployed)
    report = ctx.report
    table = Table("Infected share of the lungs vs expert severity scores (Spearman)",
                  ["score", "n", "rho", "95% interval", "p"])
    if not scored:
        table.add("none", 0, "too few to measure", "", "")
        report.table("quantification", table)
        return
    probs = infection.proba(scored)
    shares = [quantify(infection.lungs.masks[s.key], p).infected_share for s, p in zip(scored, probs, strict=True)]
    for label, values in (("opacity (0-6)", [s.severity_opacity for s in scored]),
                          ("geographic extent (0-8)", [s.severity_geographic for s in scored])):
        vals = [np.nan if v is None else v for v in values]
        r = spearman(shares, vals)
        report.results.setdefault("quantification", {})[label] = r
        if r["n"] < MIN_TEST_IMAGES or np.isnan(r["rho"]):
            table.add(label, r["n"], "too few to measure" if r["n"] < MIN_TEST_IMAGES else "n/a (constant)", "", "")
        else:
            table.add(label, r["n"], f"{r['rho']:.3f}", f"{r['ci_low']:.3f} to {r['ci_high']:.3f}", f"{r['p']:.3g}")
        report.plot(plots.plot_scatter(vals, shares, report.report_path / f"quantification_{label.split()[0]}.png",
                                       f"expert {label}", "predicted infected share of lungs", f"{conf}, n={r['n']}"))
    in_training = sum(1 for s in scored if s.infection_mask_path is not None)
    table.note = (f"Infection network {conf}. {len(scored)} images with an expert score (Cohen et al. 2020); "
                  f"{in_training} of them had an infection mask (and may have been trained on).")
    report.table("quantification", table)
