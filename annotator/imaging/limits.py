"""How big an image may be: what a file declares about its size, read from its header before any decoder
allocates a pixel, checked against caps (a 16 KB PNG may declare 30000x30000: a decompression bomb).

The importer builds its ``ImageLimits`` from the settings (``max_image_pixels``, ``min_image_side_px``);
every other reader uses ``DEFAULT_LIMITS``, which only caps the pixel count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from annotator.errors import ImageReadError

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MIN_SIDE_PX = 64


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS  # width x height x frames
    min_side_px: int = 1  # the shorter side must be at least this

    def check(self, path: Path, width: int, height: int, frames: int = 1) -> None:
        """Raise ImageReadError naming the file when the declared size is outside the caps."""
        if width <= 0 or height <= 0 or frames <= 0:
            raise ImageReadError(path, f"declares an empty size ({width}x{height}, {frames} frame(s))")
        pixels = width * height * frames
        if pixels > self.max_pixels:
            what = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
            raise ImageReadError(path, f"declares {what} = {pixels / 1e6:.1f} Mpx, over the cap of "
                                       f"{self.max_pixels / 1e6:g} Mpx (setting max_image_pixels); refused before "
                                       "decoding")
        if min(width, height) < self.min_side_px:
            raise ImageReadError(path, f"is {width}x{height}, smaller than {self.min_side_px} px on a side (setting "
                                       "min_image_side_px); too small to be a chest X-ray")


DEFAULT_LIMITS = ImageLimits()


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NOT_READABLE = "not a readable image (corrupt, truncated or another format)"


def declared_raster_size(path: Path) -> tuple[int, int, str]:
    """(width, height, format) from a raster file's header (PNG, JPEG, BMP, TIFF), without decoding pixels.

    The format is what the content is, whatever the suffix says. OSError (unreadable) passes through.
    """
    with Path(path).open("rb") as fh:
        return declared_size_in(fh, path)


def declared_size_in(fh: BinaryIO, name) -> tuple[int, int, str]:
    """The same from an open binary stream (a download held in memory: ``io.BytesIO``); errors name ``name``."""
    head = fh.read(32)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), "PNG"
    if head[:2] == b"\xff\xd8":
        return (*_jpeg_size(name, fh), "JPEG")
    if head[:2] == b"BM" and len(head) >= 26:
        if int.from_bytes(head[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            return int.from_bytes(head[18:20], "little"), int.from_bytes(head[20:22], "little"), "BMP"
        width = int.from_bytes(head[18:22], "little", signed=True)
        return width, abs(int.from_bytes(head[22:26], "little", signed=True)), "BMP"  # < 0: top-down rows
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return (*_tiff_size(name, fh), "TIFF")
    raise ImageReadError(name, _NOT_READABLE)


def _jpeg_size(path: Path, fh) -> tuple[int, int]:
    """Walk the JPEG's marker segments to its frame header (SOFn), which holds the size."""
    fh.seek(2)
    while True:
        byte = fh.read(1)
        if not byte:
            raise ImageReadError(path, "truncated JPEG (no frame header)")
        if byte != b"\xff":
            continue
        marker = fh.read(1)
        while marker == b"\xff":  # fill bytes
            marker = fh.read(1)
        if not marker:
            raise ImageReadError(path, "truncated JPEG (no frame header)")
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a length
            continue
        if code in (0xD9, 0xDA):
            raise ImageReadError(path, "not a readable image (JPEG has no frame header before its data)")
        length = int.from_bytes(fh.read(2), "big")
        if code in _JPEG_SOF:
            frame = fh.read(5)
            if len(frame) < 5:
                raise ImageReadError(path, "truncated JPEG (frame header cut)")
            return int.from_bytes(frame[3:5], "big"), int.from_bytes(frame[1:3], "big")
        if length < 2:
            raise ImageReadError(path, f"not a readable image (JPEG segment length {length})")
        fh.seek(length - 2, 1)


def _tiff_size(path: Path, fh) -> tuple[int, int]:
    """ImageWidth (256) and ImageLength (257) of the TIFF's first image file directory."""
    fh.seek(0)
    head = fh.read(8)
    order = "little" if head[:2] == b"II" else "big"
    if int.from_bytes(head[2:4], order) != 42:
        raise ImageReadError(path, "not a readable TIFF (BigTIFF or another variant); save it as PNG")
    fh.seek(int.from_bytes(head[4:8], order))
    count = int.from_bytes(fh.read(2), order)
    sizes: dict[int, int] = {}
    for _ in range(min(count, 4096)):
        entry = fh.read(12)
        if len(entry) < 12:
            break
        tag, kind = int.from_bytes(entry[0:2], order), int.from_bytes(entry[2:4], order)
        if tag in (256, 257) and kind in (3, 4):  # SHORT or LONG
            sizes[tag] = int.from_bytes(entry[8:10] if kind == 3 else entry[8:12], order)
    if 256 not in sizes or 257 not in sizes:
        raise ImageReadError(path, "not a readable TIFF (its first directory has no image size)")
    return sizes[256], sizes[257]
