import numpy as np
import pytest

from annotator.errors import MaskError
from annotator.imaging.io import read_mask
from annotator.recognition.quantification import infected_mask, quantify, severity_grade, split_lungs


def two_lungs():
    lung = np.zeros((20, 30), np.uint8)
    lung[2:18, 2:12] = 255  # image-left, the patient's right lung: 160 px
    lung[2:18, 18:28] = 255  # image-right, the patient's left lung: 160 px
    return lung


def test_shares_per_lung_are_counted_exactly():
    lung = two_lungs()
    prob = np.zeros(lung.shape, np.float32)
    prob[2:10, 2:12] = 0.9  # 80 px of the image-left lung (patient's right)
    prob[0:2, :] = 0.99  # outside the lungs: ignored
    prob[2:18, 18:20] = 0.5  # p = 0.5 is not > 0.5: not infected
    q = quantify(lung, prob)
    assert q.covid_positive is True
    assert q.covid_probability == pytest.approx(0.9)  # the 0.99 outside the lungs does not count
    assert q.infected_pixels == 80 and q.lung_pixels == 320
    assert q.infected_share == pytest.approx(0.25)
    assert q.infected_share_right == pytest.approx(0.5)
    assert q.infected_share_left == 0.0
    assert (q.lung_pixels_right, q.lung_pixels_left) == (160, 160)
    assert q.severity == "mild"


def test_no_infected_lung_pixel_is_negative():
    lung = two_lungs()
    q = quantify(lung, np.full(lung.shape, 0.3, np.float32))
    assert (q.covid_positive, q.infected_share, q.severity) == (False, 0.0, "none")
    assert q.covid_probability == pytest.approx(0.3)


def test_one_lung_found_is_that_lung_not_cut_in_two():
    lung = np.zeros((20, 30), np.uint8)
    lung[2:18, 18:28] = 255  # only the image-right lung: the patient's left
    right, left = split_lungs(lung)
    assert right.sum() == 0 and left.sum() == 160
    prob = np.zeros(lung.shape, np.float32)
    prob[2:10, 18:28] = 0.9
    q = quantify(lung, prob)
    assert (q.infected_share_left, q.infected_share_right) == (pytest.approx(0.5), 0.0)


def test_merged_lungs_are_split_at_the_image_midline():
    lung = np.zeros((20, 30), np.uint8)
    lung[2:18, 4:24] = 255  # one region across the midline (column 15): 11 columns left of it, 9 right
    right, left = split_lungs(lung)
    assert (right.sum(), left.sum()) == (16 * 11, 16 * 9)
    assert not (right & left).any()


@pytest.mark.parametrize("share,grade", [(0.0, "none"), (0.01, "mild"), (0.25, "mild"), (0.3, "moderate"),
                                         (0.6, "severe"), (0.9, "critical")])
def test_severity_grades(share, grade):
    assert severity_grade(share) == grade


def test_real_lung_mask_splits_into_the_patients_right_and_left(sample_root):
    lung = read_mask(sample_root / "masks/lung/quex_covid_1579.png")
    right, left = split_lungs(lung)
    cols = np.arange(lung.shape[1])
    assert left.any() and right.any()
    assert cols[right.any(0)].mean() < cols[left.any(0)].mean()  # the patient's right is on the image's left
    assert not (left & right).any()
    assert left.sum() + right.sum() <= (lung > 0).sum()


def test_real_infection_mask_quantified(sample_root):
    lung = read_mask(sample_root / "masks/lung/quex_covid_1579.png")
    infection = read_mask(sample_root / "masks/infection/quex_covid_1579.png", lung.shape)
    q = quantify(lung, infection)
    expected = np.count_nonzero((infection > 0) & (lung > 0)) / np.count_nonzero(lung)
    assert q.covid_positive and q.infected_share == pytest.approx(expected)
    assert 0 < q.infected_share < 1


def test_size_mismatch_is_a_mask_error():
    with pytest.raises(MaskError, match="infection map"):
        infected_mask(np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.float32))
