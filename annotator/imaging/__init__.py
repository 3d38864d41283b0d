"""Reading CXRs to grayscale arrays, mask files, Label Studio brush RLE, overlays, quality attributes."""

from annotator.imaging.io import read_image, read_mask, write_mask, file_sha256  # noqa: F401
