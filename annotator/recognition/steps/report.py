"""What a pipeline run leaves behind: the report folder's tables, plots and README, ``results.json``, the
deployable manifest, and the Model rows the caller's session writes. Steps add to one ``RunReport``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from annotator.evaluation.tables import MIN_TEST_IMAGES, Table, write_table
from annotator.recognition.predict import CURRENT_NAME, MANIFEST_NAME

TABLE_STEMS = {  # numbered as the thesis numbers its tables
    "stage1": "table_03_stage1_unet",
    "covid-sars-mers": "table_04_covid_sars_mers",
    "preprocessing_search": "table_04_preprocessing_search",
    "lung": "table_05_lung_segmentation",
    "infection_configurations": "table_06_infection_parallel_vs_cascaded",
    "infection": "table_07_infection_segmentation",
    "detection": "table_08_detection",
    "covid-pneumonia-normal": "table_09_covid_pneumonia_normal",
    "covid-pneumonia-normal-networks": "table_10_covid_pneumonia_normal_networks",
    "segmentation_networks": "table_11_segmentation_networks",
    "classification_networks": "table_12_classification_networks",
    "system_time": "table_system_time",
    "quantification": "table_quantification_vs_severity",
}


class PendingModel(NamedTuple):
    """A trained network the caller's session records as a Model row."""

    task: str
    spec: str
    path: Path
    version: str
    metrics: dict


@dataclass
class RunReport:
    report_path: Path
    tables: dict[str, Path] = field(default_factory=dict)  # name -> markdown path
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)  # written as results.json
    manifest: dict = field(default_factory=dict)  # checkpoints relative to the run's model folder
    models: list[PendingModel] = field(default_factory=list)

    def table(self, name: str, table: Table) -> None:
        _, md = write_table(table, self.report_path, TABLE_STEMS.get(name, name))
        self.tables[name] = md

    def plot(self, path: Path) -> None:
        self.plots.append(path)

    def register(self, task: str, spec: str, path: Path, version: str, metrics: dict) -> None:
        self.models.append(PendingModel(task, spec, path, version, metrics))

    def write_manifest(self, work_path: Path) -> Path:
        """``<work>/pipeline.json`` (relative paths) and ``<work>/../current.json`` (absolute) for `predict`."""
        work_path.mkdir(parents=True, exist_ok=True)
        path = work_path / MANIFEST_NAME
        path.write_text(json.dumps(self.manifest, indent=2))
        current = dict(self.manifest)
        for k in ("lung", "infection"):
            current[k] = str(work_path / self.manifest[k])
        current["classifiers"] = {s: str(work_path / p) for s, p in self.manifest["classifiers"].items()}
        (work_path.parent / CURRENT_NAME).write_text(json.dumps(current, indent=2))
        return path

    def write_readme(self, preset: str) -> None:
        lines = [f"# Recognition pipeline report (preset {preset})", "",
                 "Every figure states its test-set size n; a class with fewer than "
                 f"{MIN_TEST_IMAGES} test images reads 'too few to measure'. Percentages are followed by the 95% "
                 "interval radius 1.96*sqrt(m(1-m)/n).", "", "## Data and splits", ""]
        lines += [f"- {n}" for n in self.notes]
        lines += ["", "## Tables", ""]
        for md in sorted(self.tables.values(), key=lambda p: p.name):
            lines.append(md.read_text())
        lines += ["## Plots", ""] + [f"- {p.name}" for p in self.plots]
        (self.report_path / "README.md").write_text("\n".join(lines) + "\n")
        (self.report_path / "results.json").write_text(json.dumps(self.results, indent=2, default=json_default))


def json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def headline(results: dict) -> dict:
    """The figures a user quotes: weighted overall per classifier, detection and segmentation, correlations."""
    out: dict = {}
    for scheme, configs in results.get("classification", {}).items():
        for key, v in configs.items():
            ov = v["report"]["overall"]
            out[f"{scheme} {key}"] = {"n": ov["n"], "accuracy": ov["accuracy"], "f1": ov["f1"]}
    for name, v in results.get("detection", {}).items():
        ov = v["report"]["overall"]
        out[f"detection {name}"] = {"n": ov["n"], "accuracy": ov["accuracy"], "f1": ov["f1"]}
    for label, r in results.get("quantification", {}).items():
        out[f"severity {label}"] = {"n": r["n"], "rho": r["rho"]}
    for name, r in results.get("lung", {}).items():
        out[f"lung {name}"] = {"n": r["n"], "dsc": r["dsc"]}
    return out
