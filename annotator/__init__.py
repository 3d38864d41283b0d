"""cxr-annotator: human-in-the-loop lung masks for chest X-ray collections."""

__version__ = "0.1.0"
