import csv
import math

import numpy as np
import pytest

from annotator.evaluation.correlation import spearman
from annotator.evaluation.metrics import classification_report
from annotator.evaluation.roc import auc, one_vs_rest, roc_curve
from annotator.evaluation.tables import TOO_FEW, Table, classification_columns, classification_rows, percent, write_table


def test_percent_formats_value_radius_and_too_few():
    assert percent(0.9312, 0.0201, 100) == "93.12 ± 2.01"
    assert percent(0.5, None, 4) == TOO_FEW
    assert percent(float("nan"), 0.1, 50) == "n/a"


def test_classification_table_written_as_csv_and_markdown(tmp_path):
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 1, 2]])  # the third class has 3 images
    report = classification_report(cm, ["covid", "normal", "mers"])
    table = Table("t", classification_columns(["network"]))
    classification_rows(table, report, ["covid", "normal", "mers"], prefix=["resnet18"])
    csv_path, md_path = write_table(table, tmp_path, "table_x")
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["network", "class", "n", "accuracy %", "precision %", "sensitivity %", "f1 %", "specificity %"]
    covid = rows[1]
    assert covid[2] == "10"
    assert covid[5] == percent(0.8, 1.96 * math.sqrt(0.8 * 0.2 / 23), 10)  # sensitivity 8/10, radius over N = 23
    assert rows[3][1] == "mers" and rows[3][3] == TOO_FEW
    assert rows[4][1] == "overall (weighted)" and rows[4][2] == "23"
    md = md_path.read_text()
    assert md.startswith("### t") and "| resnet18 | mers | 3 | too few to measure |" in md


def test_roc_of_a_hand_made_ranking():
    y = [1, 1, 0, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.4, 0.1]
    fpr, tpr = roc_curve(y, s)
    assert fpr.tolist() == [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1]
    assert tpr.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert auc(fpr, tpr) == pytest.approx(8 / 9)  # 8 of 9 positive-negative pairs ordered right


def test_one_vs_rest_ties_and_missing_class():
    proba = np.array([[0.5, 0.5], [0.5, 0.5]])
    curves = one_vs_rest([0, 0], proba, ["a", "b"])
    assert curves["a"]["n"] == 2 and math.isnan(curves["a"]["auc"])  # no negative: no curve


def test_spearman_on_the_real_expert_scores():
    from annotator.config import find_sample_data

    root = find_sample_data()
    if root is None:
        pytest.skip("the sample CXR set is not available")
    rows = [r for r in csv.DictReader((root / "manifest.csv").open()) if r["severity_opacity_mean"]]
    geo = [float(r["severity_geographic_mean"]) for r in rows]
    opa = [float(r["severity_opacity_mean"]) for r in rows]
    r = spearman(geo, opa)
    assert r["n"] == 61
    from scipy.stats import spearmanr

    assert r["rho"] == pytest.approx(spearmanr(geo, opa).statistic)
    assert r["rho"] > 0.7  # the two expert scores agree strongly
    assert r["ci_low"] < r["rho"] < r["ci_high"]


def test_spearman_drops_missing_and_reports_constant_as_nan():
    r = spearman([1, 2, 3, np.nan, 5], [2, 4, 6, 8, np.nan])
    assert r["n"] == 3 and r["rho"] == pytest.approx(1.0)
    assert math.isnan(spearman([0, 0, 0, 0], [1, 2, 3, 4])["rho"])
