"""Result tables, written through pandas DataFrames as CSV and Markdown. Every figure carries its n; a class
with fewer than ``MIN_TEST_IMAGES`` test images reads "too few to measure" instead of a percentage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

MIN_TEST_IMAGES = 5
TOO_FEW = "too few to measure"
CLASS_METRICS = ("accuracy", "precision", "sensitivity", "f1", "specificity")
SEG_METRICS = ("accuracy", "iou", "dsc")


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    note: str = ""

    def add(self, *values) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"row has {len(values)} values for {len(self.columns)} columns of {self.title!r}")
        self.rows.append(list(values))

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame; cells keep their Python values (no int -> float where one is missing)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns, dtype=object)


def percent(value: float, ci: float | None = None, n: int | None = None, min_n: int = MIN_TEST_IMAGES) -> str:
    """'93.10 ± 2.01' (percent), or TOO_FEW when n < min_n, or 'n/a' for NaN."""
    if n is not None and n < min_n:
        return TOO_FEW
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{100 * value:.2f}"
    if ci is not None and not math.isnan(ci):
        text += f" ± {100 * ci:.2f}"
    return text


def _auc_cell(value: float | None, n: int) -> str:
    if n < MIN_TEST_IMAGES:
        return TOO_FEW
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def classification_rows(table: Table, report: dict, class_names: Sequence[str], prefix: Sequence = (),
                        aucs: dict[str, float] | None = None) -> None:
    """Add per-class rows and the weighted overall row of a metrics.classification_report to ``table``;
    with ``aucs`` (class -> one-vs-rest ROC AUC) an AUC cell ends each row (overall: weighted by class n)."""
    for name in class_names:
        row = report["classes"][name]
        auc = [_auc_cell(aucs[name], row["n"])] if aucs is not None else []
        table.add(*prefix, name, row["n"], *(percent(row[m], row[f"{m}_ci"], row["n"]) for m in CLASS_METRICS), *auc)
    ov = report["overall"]
    auc = []
    if aucs is not None:
        pairs = [(aucs[c], report["classes"][c]["n"]) for c in class_names
                 if report["classes"][c]["n"] and not math.isnan(aucs[c])]
        weight = sum(n for _, n in pairs)
        auc = [_auc_cell(sum(a * n for a, n in pairs) / weight if weight else float("nan"), ov["n"])]
    table.add(*prefix, "overall (weighted)", ov["n"], *(percent(ov[m], ov[f"{m}_ci"], ov["n"]) for m in CLASS_METRICS),
              *auc)


def classification_columns(prefix: Sequence[str] = (), auc: bool = False) -> list[str]:
    return [*prefix, "class", "n", *(f"{m} %" for m in CLASS_METRICS), *(["AUC"] if auc else [])]


def markdown_lines(frame: pd.DataFrame) -> list[str]:
    """A DataFrame as a Markdown table (pandas' own ``to_markdown`` needs tabulate, which we do not ship)."""
    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False, name=None)]
    return lines


def to_markdown(table: Table) -> str:
    lines = [f"### {table.title}", "", *markdown_lines(table.frame())]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def write_table(table: Table, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` from the table's DataFrame; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    table.frame().to_csv(csv_path, index=False)
    md_path.write_text(to_markdown(table))
    return csv_path, md_path
