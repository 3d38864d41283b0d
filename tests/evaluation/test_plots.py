import numpy as np

from annotator.evaluation.plots import plot_confusion, plot_roc, plot_scatter
from annotator.evaluation.roc import one_vs_rest
from annotator.imaging.io import read_image


def test_plots_are_written_as_png(tmp_path):
    cm = np.array([[5, 1], [2, 7]])
    path = plot_confusion(cm, ["COVID-19", "non-COVID"], tmp_path / "cm.png", "detection")
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    roc = plot_roc(one_vs_rest([0, 1, 1, 0], proba, ["a", "b"]), tmp_path / "roc.png", "roc")
    sc = plot_scatter([1, 2, 3], [0.1, 0.3, 0.2], tmp_path / "s.png", "x", "y", "t")
    for p in (path, roc, sc):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert read_image(p).std() > 0  # not a blank page
