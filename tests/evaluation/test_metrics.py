"""The thesis' metrics against values computed by hand (eq. 8-17)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotator.evaluation.metrics import (
    classification_report,
    confidence_radius,
    confusion_matrix,
    dice,
    iou,
    pixel_accuracy,
    segmentation_scores,
)

# image 1: TP 2, FP 1, FN 1, TN 2
PRED_1 = np.array([[1, 1, 0], [0, 1, 0]], np.uint8) * 255
TRUE_1 = np.array([[1, 0, 0], [0, 1, 1]], np.uint8) * 255
# image 2: the network found nothing, the truth has one pixel: TP 0, FP 0, FN 1, TN 5
PRED_2 = np.zeros((2, 3), np.uint8)
TRUE_2 = np.array([[0, 0, 0], [0, 0, 1]], bool)


def r95(m, n):
    return 1.96 * math.sqrt(m * (1 - m) / n)


def test_single_image_metrics():
    assert dice(PRED_1, TRUE_1) == pytest.approx(4 / 6)  # 2*2 / (2*2 + 1 + 1)
    assert iou(PRED_1, TRUE_1) == pytest.approx(2 / 4)  # 2 / (2 + 1 + 1)
    assert pixel_accuracy(PRED_1, TRUE_1) == pytest.approx(4 / 6)  # (2 + 2) / 6
    assert (dice(PRED_2, TRUE_2), iou(PRED_2, TRUE_2)) == (0.0, 0.0)
    assert pixel_accuracy(PRED_2, TRUE_2) == pytest.approx(5 / 6)


def test_bool_0_1_and_0_255_masks_score_alike():
    assert dice(PRED_1 > 0, TRUE_1 // 255) == dice(PRED_1, TRUE_1)


def test_two_empty_masks_agree_perfectly_and_identical_masks_score_one():
    empty = np.zeros((4, 4), np.uint8)
    assert (dice(empty, empty), iou(empty, empty), pixel_accuracy(empty, empty)) == (1.0, 1.0, 1.0)
    assert (dice(TRUE_1, TRUE_1), iou(TRUE_1, TRUE_1)) == (1.0, 1.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        dice(np.zeros((2, 3)), np.zeros((3, 2)))


def test_per_image_mean_versus_pooled():
    s = segmentation_scores([PRED_1, PRED_2], [TRUE_1, TRUE_2])
    assert s["n"] == 2
    # per-image means
    assert s["dsc"] == pytest.approx((2 / 3 + 0) / 2)
    assert s["iou"] == pytest.approx((1 / 2 + 0) / 2)
    assert s["accuracy"] == pytest.approx((4 / 6 + 5 / 6) / 2)
    assert s["dsc_ci"] == pytest.approx(r95(1 / 3, 2))
    assert s["iou_ci"] == pytest.approx(r95(0.25, 2))
    # pooled: TP 2, FP 1, FN 2, TN 7 over 12 pixels
    pooled = s["pooled"]
    assert pooled["pixels"] == 12
    assert pooled["dsc"] == pytest.approx(4 / 7)
    assert pooled["iou"] == pytest.approx(2 / 5)
    assert pooled["accuracy"] == pytest.approx(9 / 12)
    assert pooled["dsc_ci"] == pytest.approx(r95(4 / 7, 12))


def test_segmentation_scores_refuses_mismatched_lists():
    with pytest.raises(ValueError, match="1 predicted masks but 2 true masks"):
        segmentation_scores([PRED_1], [TRUE_1, TRUE_2])
    with pytest.raises(ValueError, match="no masks"):
        segmentation_scores([], [])


@pytest.mark.parametrize(("m", "n", "expected"), [(0.9, 100, 0.0588), (0.5, 400, 0.049), (0.0, 10, 0.0),
                                                  (1.0, 10, 0.0), (0.75, 12, 1.96 * 0.125)])
def test_confidence_radius(m, n, expected):
    # 0.9/100: 1.96*sqrt(0.09/100) = 1.96*0.03; 0.5/400: 1.96*0.025; 0.75/12: sqrt(0.1875/12) = 0.125
    assert confidence_radius(m, n) == pytest.approx(expected)


def test_confidence_radius_of_nothing_is_nan():
    assert math.isnan(confidence_radius(0.5, 0))


CONFUSION = np.array([[5, 1, 0],  # rows: true class, columns: predicted
                      [2, 3, 1],
                      [0, 1, 7]])
CLASSES = ["covid", "non_covid", "normal"]


def test_classification_report_per_class_by_hand():
    report = classification_report(CONFUSION, CLASSES)
    assert report["n"] == 20
    covid, non_covid, normal = (report["classes"][c] for c in CLASSES)
    # covid: TP 5, FN 1, FP 2, TN 12
    assert covid["n"] == 6
    assert covid["accuracy"] == pytest.approx(17 / 20)
    assert covid["precision"] == pytest.approx(5 / 7)
    assert covid["sensitivity"] == pytest.approx(5 / 6)
    assert covid["f1"] == pytest.approx(10 / 13)
    assert covid["specificity"] == pytest.approx(12 / 14)
    # non_covid: TP 3, FN 3, FP 2, TN 12
    assert non_covid["accuracy"] == pytest.approx(15 / 20)
    assert non_covid["precision"] == pytest.approx(3 / 5)
    assert non_covid["sensitivity"] == pytest.approx(3 / 6)
    assert non_covid["f1"] == pytest.approx(6 / 11)
    assert non_covid["specificity"] == pytest.approx(12 / 14)
    # normal: TP 7, FN 1, FP 1, TN 11
    assert normal["n"] == 8
    assert normal["accuracy"] == pytest.approx(18 / 20)
    assert normal["precision"] == pytest.approx(7 / 8)
    assert normal["sensitivity"] == pytest.approx(7 / 8)
    assert normal["f1"] == pytest.approx(7 / 8)
    assert normal["specificity"] == pytest.approx(11 / 12)
    # radii (eq. 8): every figure over N = 20 test images, not over its own denominator
    assert covid["accuracy_ci"] == pytest.approx(r95(17 / 20, 20))
    assert covid["precision_ci"] == pytest.approx(r95(5 / 7, 20))
    assert covid["sensitivity_ci"] == pytest.approx(r95(5 / 6, 20))
    assert covid["specificity_ci"] == pytest.approx(r95(12 / 14, 20))
    assert non_covid["f1_ci"] == pytest.approx(r95(6 / 11, 20))


def test_interval_of_a_small_class_uses_the_number_of_test_images():
    # Table 10's layout: a rare class (16 SARS images among 340) keeps a radius set by all 340 images,
    # as eq. 8 does; over its own 16 images the radius would be sqrt(340 / 16) = 4.6 times wider.
    cm = np.array([[300, 2, 0], [12, 4, 0], [20, 0, 2]])
    sars = classification_report(cm, ["covid", "sars", "mers"])["classes"]["sars"]
    assert sars["n"] == 16 and sars["sensitivity"] == pytest.approx(0.25)
    assert sars["sensitivity_ci"] == pytest.approx(1.96 * math.sqrt(0.25 * 0.75 / 340))
    assert sars["sensitivity_ci"] == pytest.approx(0.0460, abs=5e-5)


def test_classification_report_overall_is_weighted_by_class_size():
    overall = classification_report(CONFUSION, CLASSES)["overall"]
    sizes = (6, 6, 8)

    def weighted(values):
        return sum(s * v for s, v in zip(sizes, values)) / 20

    assert overall["accuracy"] == pytest.approx(weighted([17 / 20, 15 / 20, 18 / 20])) == pytest.approx(0.84)
    assert overall["precision"] == pytest.approx(weighted([5 / 7, 3 / 5, 7 / 8]))
    assert overall["precision"] == pytest.approx(0.744286, abs=1e-6)
    # the size-weighted sensitivity is the plain accuracy of the classifier: 15 right of 20
    assert overall["sensitivity"] == pytest.approx(15 / 20)
    assert overall["f1"] == pytest.approx(weighted([10 / 13, 6 / 11, 7 / 8]))
    assert overall["specificity"] == pytest.approx(weighted([6 / 7, 6 / 7, 11 / 12]))
    assert overall["accuracy_ci"] == pytest.approx(r95(0.84, 20))


def test_class_never_seen_nor_predicted_is_left_out_of_the_overall():
    cm = np.array([[4, 1, 0], [1, 4, 0], [0, 0, 0]])
    report = classification_report(cm, ["a", "b", "c"])
    assert math.isnan(report["classes"]["c"]["precision"]) and math.isnan(report["classes"]["c"]["f1"])
    assert report["overall"]["precision"] == pytest.approx(0.8)


def test_confusion_matrix_and_its_shape_check():
    cm = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    with pytest.raises(ValueError, match="expected"):
        classification_report(cm, ["a", "b"])


def test_table_10s_interval_comes_out_of_its_6788_test_images():
    # The thesis' Table 10 states +-0.73 (percent) beside a figure measured on N = 6,788 test images (eq. 8).
    # Which figures carry exactly that radius: 1.96 sqrt(m (1 - m) / 6788) rounds to 0.73 % only for m near
    # 0.894 (or 0.106); near 0.95 it would read 0.52. A class of 1,000 images with precision 894/1000 among
    # 6,788 test images gets the table's +-0.73, while its own denominator would give +-1.91.
    assert round(100 * confidence_radius(0.894, 6788), 2) == 0.73
    assert round(100 * confidence_radius(0.95, 6788), 2) == 0.52
    cm = np.array([[894, 60, 46], [60, 2800, 40], [46, 40, 2802]])
    assert cm.sum() == 6788
    report = classification_report(cm, ["covid", "pneumonia", "normal"])
    covid = report["classes"]["covid"]
    assert covid["precision"] == pytest.approx(0.894) and covid["sensitivity"] == pytest.approx(0.894)
    assert f"{100 * covid['precision_ci']:.2f}" == "0.73"
    assert f"{100 * confidence_radius(covid['precision'], 1000):.2f}" == "1.91"
