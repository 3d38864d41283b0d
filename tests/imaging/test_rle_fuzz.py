"""Property tests of the brush RLE decoder: any input ends in a mask or a MaskError, in bounded memory, and
agrees with Label Studio's own decoder whenever that one decodes it to the right size."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.errors import MaskError
from annotator.imaging.io import read_mask
from annotator.imaging.rle import mask_to_rle, rle_to_mask


FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
MEMORY_CAP = 32 << 20  # bytes a decode of a 64x64 image may allocate at its peak, whatever the input


@pytest.fixture(scope="module")
def real_rle(sample_data):
    """A real lung mask shrunk to 48x64 (fast to decode) and its RLE."""
    import cv2

    path = sorted((sample_data / "masks" / "lung").glob("*.png"))[3]
    mask = cv2.resize(read_mask(path), (64, 48), interpolation=cv2.INTER_NEAREST)
    return mask, mask_to_rle(mask)


def _decode_bounded(rle, height, width):
    tracemalloc.start()
    try:
        try:
            out = rle_to_mask(rle, height, width)
        except MaskError:
            out = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_CAP, peak
    if out is not None:
        assert out.shape == (height, width) and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}
    return out


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(), st.text(max_size=5))


@FUZZ
@given(rle=st.one_of(st.lists(st.integers(0, 255), max_size=400), st.lists(json_scalars, max_size=40), json_scalars),
       height=st.one_of(st.integers(-3, 70), json_scalars), width=st.one_of(st.integers(-3, 70), json_scalars))
def test_any_input_is_a_mask_or_a_mask_error(rle, height, width):
    _decode_bounded(rle, height, width)


@st.composite
def mutated(draw, original: list[int]):
    rle = list(original)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "grow", "header", "value"]))
        if action == "flip" and rle:
            i = draw(st.integers(0, len(rle) - 1))
            rle[i] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            rle = rle[: draw(st.integers(0, len(rle)))]
        elif action == "grow":
            rle += draw(st.lists(st.integers(0, 255), max_size=50))
        elif action == "header" and len(rle) >= 4:
            rle[:4] = list(draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big"))
        elif action == "value" and rle:
            rle[draw(st.integers(0, len(rle) - 1))] = draw(st.integers(-5, 300))
    return rle


@FUZZ
@given(data=st.data())
def test_mutated_real_rle_agrees_with_label_studio_or_is_refused(real_rle, data):
    from label_studio_sdk.converter.brush import decode_rle

    mask, original = real_rle
    rle = data.draw(mutated(original))
    ours = _decode_bounded(rle, *mask.shape)
    try:
        theirs = np.asarray(decode_rle(rle))
    except Exception:  # noqa: BLE001 - Label Studio's decoder raises many types on garbage: nothing to compare
        return
    if ours is not None:
        assert theirs.size == mask.size * 4
        np.testing.assert_array_equal(ours, np.where(theirs.reshape(*mask.shape, 4)[:, :, 3] > 0, 255, 0))
    elif theirs.size == mask.size * 4 and all(0 <= v <= 255 for v in rle):
        # stricter than Label Studio only where its decoder reads past the end as a shorter word
        with pytest.raises(MaskError, match="ends after"):
            rle_to_mask(rle, *mask.shape)


def test_header_claiming_512_mi_values_is_refused_before_decoding():
    rle = list((512 * 2**20).to_bytes(4, "big")) + [0] * 60
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(MaskError, match=r"claims 536870912 values .*expected 256x256=65536 pixels; refused"):
            rle_to_mask(rle, 256, 256)
        elapsed, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # nothing of the claimed 512 MiB was allocated
    print(f"refused in {elapsed * 1000:.2f} ms, peak {peak} bytes")


def test_image_size_over_the_cap_is_refused_before_decoding():
    rle = list((4 * 100_000 * 100_000).to_bytes(8, "big")[-4:]) + [0] * 8
    with pytest.raises(MaskError, match=r"100000x100000 is over the cap of 50000000 pixels"):
        rle_to_mask(rle, 100_000, 100_000)
