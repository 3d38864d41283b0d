"""Label Studio brush RLE <-> {0,255} masks.

Encoding goes through label_studio_sdk.converter.brush (what Label Studio itself reads). Decoding is the
same algorithm as its ``decode_rle`` (thi-ng's rle-pack: a 32-bit value count, a 5-bit word size, four
4-bit run-length sizes, then runs), written here so that an RLE from outside is checked before anything
is allocated: its header must claim exactly the image's RGBA value count, the image must be under a pixel
cap, and the list must be bytes no longer than any RLE of that size can be. A claim of 512 Mi values is
refused at once instead of costing 600 MB. Every malformed input is a MaskError.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from annotator.errors import MaskError
from annotator.imaging.limits import DEFAULT_MAX_PIXELS

_HEADER_BITS = 32 + 5 + 4 * 4
_MAX_BITS_PER_VALUE = 1 + 2 + 16 + 32  # a literal run of one value with the widest sizes


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Encode an HxW mask (bool, 0/1 or 0/255) as the brush RLE Label Studio stores."""
    from label_studio_sdk.converter.brush import mask2rle

    mask = np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
    return [int(v) for v in mask2rle(mask)]


def _size(height, width, max_pixels: int) -> int:
    """The RGBA value count of an image of this size, or a MaskError when the size is not usable."""
    whole = all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in (height, width))
    if not whole or height <= 0 or width <= 0:
        raise MaskError(f"brush RLE image size {width!r}x{height!r} is not two positive whole numbers")
    height, width = int(height), int(width)
    if height * width > max_pixels:
        raise MaskError(f"brush RLE image size {width}x{height} is over the cap of {max_pixels} pixels")
    return height * width * 4


def _is_byte(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and 0 <= value <= 255


def _bits(rle, num: int) -> str:
    if not isinstance(rle, (list, tuple)):
        raise MaskError(f"brush RLE is a {type(rle).__name__}, not a list of bytes")
    if len(rle) * 8 < _HEADER_BITS:
        raise MaskError(f"brush RLE of {len(rle)} bytes is shorter than its header")
    if len(rle) * 8 > _HEADER_BITS + num * _MAX_BITS_PER_VALUE + 8:
        raise MaskError(f"brush RLE of {len(rle)} bytes is longer than any RLE of {num} values can be")
    if not all(_is_byte(v) for v in rle):
        raise MaskError("brush RLE holds values that are not bytes (whole numbers 0..255)")
    raw = np.unpackbits(np.asarray(rle, dtype=np.uint8))
    return (raw + ord("0")).tobytes().decode("ascii")


def rle_to_mask(rle: list[int], height: int, width: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a brush RLE to an HxW {0,255} mask (the alpha channel); anything malformed is a MaskError."""
    expected = _size(height, width, max_pixels)
    if not isinstance(rle, (list, tuple)) or len(rle) < 4 or not all(_is_byte(v) for v in rle[:4]):
        raise MaskError("malformed brush RLE (no 32-bit value count at its start)")
    num = int.from_bytes(bytes(int(v) for v in rle[:4]), "big")
    if num != expected:
        raise MaskError(f"brush RLE claims {num} values ({num // 4} pixels), expected "
                        f"{height}x{width}={height * width} pixels; refused before decoding")
    flat = _decode(_bits(rle, num), num)
    alpha = flat.reshape(height, width, 4)[:, :, 3]
    return np.where(alpha > 0, 255, 0).astype(np.uint8)


def _decode(bits: str, num: int) -> np.ndarray:
    pos = 0

    def read(size: int) -> int:
        nonlocal pos
        if pos + size > len(bits):
            raise MaskError(f"malformed brush RLE (it ends after {len(bits) // 8} bytes, in the middle of a run)")
        value = int(bits[pos:pos + size], 2) if size else 0
        pos += size
        return value

    read(32)
    word_size = read(5) + 1
    run_sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(run_sizes[read(2)])
        if repeat:
            out[i:j] = _byte(read(word_size))
            i = j
        else:
            if j > num:
                raise MaskError(f"malformed brush RLE (a run of values ends at {j}, past its {num} values)")
            while i < j:
                out[i] = _byte(read(word_size))
                i += 1
    return out


def _byte(value: int) -> int:
    if value > 255:
        raise MaskError(f"malformed brush RLE (value {value} does not fit a byte)")
    return value


def union_rles(rles: Iterable[list[int]], height: int, width: int) -> np.ndarray:
    """The union of several brush regions (an RA's edit may be many strokes)."""
    out = np.zeros((height, width), np.uint8)
    for rle in rles:
        out |= rle_to_mask(rle, height, width)
    return out
