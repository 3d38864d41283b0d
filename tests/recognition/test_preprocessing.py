import numpy as np
import pytest

from annotator.errors import UnknownNameError
from annotator.imaging.io import read_image, read_mask
from annotator.recognition.preprocessing import SCHEMES, apply_lung_mask, clahe, complement, prepare


@pytest.fixture(scope="module")
def cxr(sample_root):
    image = read_image(sample_root / "images/covid/quex_covid_1579.jpg")
    lung = read_mask(sample_root / "masks/lung/quex_covid_1579.png", image.shape)
    return image, lung


def test_complement_is_the_negative():
    image = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    assert complement(image).tolist() == [[255, 254, 127, 0]]


def test_clahe_equalises_locally_on_a_real_cxr(cxr):
    image, _ = cxr
    out = clahe(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    # local equalisation: every 32x32 tile uses more grey levels than before, on average
    def levels(a):
        return np.mean([len(np.unique(a[y:y + 32, x:x + 32])) for y in range(0, 256, 32) for x in range(0, 256, 32)])
    assert levels(out) > levels(image)
    assert np.abs(out.astype(int) - image).mean() > 5  # a real change, not a copy


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_scheme_gives_a_3_channel_float_input(cxr, scheme):
    image, _ = cxr
    arr = prepare(image, scheme, 64)
    assert arr.shape == (64, 64, 3) and arr.dtype == np.float32
    assert 0.0 <= arr.min() and arr.max() <= 1.0


def test_stack_holds_original_clahe_and_complement(cxr):
    image, _ = cxr
    stack = prepare(image, "stack", 64)
    np.testing.assert_allclose(stack[..., 0], prepare(image, "original", 64)[..., 0])
    np.testing.assert_allclose(stack[..., 2], 1.0 - stack[..., 0], atol=1e-6)
    np.testing.assert_allclose(stack[..., 1], prepare(image, "clahe", 64)[..., 0])


def test_segmented_input_is_zero_outside_the_lungs(cxr):
    image, lung = cxr
    seg = apply_lung_mask(image, lung)
    assert (seg[lung == 0] == 0).all()
    assert (seg[lung > 0] == image[lung > 0]).all()


def test_unknown_scheme_lists_the_valid_ones(cxr):
    with pytest.raises(UnknownNameError, match="clahe, complement, original, stack"):
        prepare(cxr[0], "gamma", 64)
