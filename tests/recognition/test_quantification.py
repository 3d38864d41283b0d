import numpy as np
import pytest

from annotator.errors import MaskError
from annotator.imaging.io import read_mask
from annotator.recognition.quantification import infected_mask, quantify, severity_grade, split_lungs


def two_lungs():
    lung = np.zeros((20, 30), np.uint8)
    lung[2:18, 2:12] = 255  # image-left: 160 px
    lung[2:18, 18:28] = 255  # image-right: 160 px
    return lung


def test_shares_per_lung_are_counted_exactly():
    lung = two_lungs()
    prob = np.zeros(lung.shape, np.float32)
    prob[2:10, 2:12] = 0.9  # 80 px of the image-left lung
    prob[0:2, :] = 0.99  # outside the lungs: ignored
    prob[2:18, 18:20] = 0.5  # p = 0.5 is not > 0.5: not infected
    q = quantify(lung, prob)
    assert q.covid_positive is True
    assert q.infected_pixels == 80 and q.lung_pixels == 320
    assert q.infected_share == pytest.approx(0.25)
    assert q.infected_share_image_left == pytest.approx(0.5)
    assert q.infected_share_image_right == 0.0
    assert q.severity == "mild"


def test_no_infected_lung_pixel_is_negative():
    lung = two_lungs()
    q = quantify(lung, np.zeros(lung.shape, np.float32))
    assert (q.covid_positive, q.infected_share, q.severity) == (False, 0.0, "none")


@pytest.mark.parametrize("share,grade", [(0.0, "none"), (0.01, "mild"), (0.25, "mild"), (0.3, "moderate"),
                                         (0.6, "severe"), (0.9, "critical")])
def test_severity_grades(share, grade):
    assert severity_grade(share) == grade


def test_real_lung_mask_splits_into_left_and_right(sample_root):
    lung = read_mask(sample_root / "masks/lung/quex_covid_1579.png")
    left, right = split_lungs(lung)
    cols = np.arange(lung.shape[1])
    assert left.any() and right.any()
    assert cols[left.any(0)].mean() < cols[right.any(0)].mean()
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
