"""Label Studio brush RLE <-> {0,255} masks, through label_studio_sdk.converter.brush (exact)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from annotator.errors import MaskError


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Encode an HxW mask (bool, 0/1 or 0/255) as the brush RLE Label Studio stores."""
    from label_studio_sdk.converter.brush import mask2rle

    mask = np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
    return [int(v) for v in mask2rle(mask)]


def rle_to_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """Decode a brush RLE to an HxW {0,255} mask; a malformed RLE or wrong size is a MaskError."""
    from label_studio_sdk.converter.brush import decode_rle

    try:
        flat = np.asarray(decode_rle(list(rle)), dtype=np.uint8)
    except Exception as exc:  # the decoder raises IndexError/ValueError on garbage
        raise MaskError(f"malformed brush RLE ({type(exc).__name__}: {exc})") from exc
    if flat.size != height * width * 4:
        raise MaskError(f"brush RLE holds {flat.size // 4} pixels, expected {height}x{width}={height * width}")
    alpha = flat.reshape(height, width, 4)[:, :, 3]
    return np.where(alpha > 0, 255, 0).astype(np.uint8)


def union_rles(rles: Iterable[list[int]], height: int, width: int) -> np.ndarray:
    """The union of several brush regions (an RA's edit may be many strokes)."""
    out = np.zeros((height, width), np.uint8)
    for rle in rles:
        out |= rle_to_mask(rle, height, width)
    return out
