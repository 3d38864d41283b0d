"""One exception tree: everything the tool raises on purpose derives from AnnotatorError.

The CLI renders an AnnotatorError as a one-line message and a non-zero exit code; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class AnnotatorError(Exception):
    """Base of every error the tool raises on purpose. The message says what to do."""


class ConfigError(AnnotatorError):
    """A setting is missing or malformed."""


class WorkspaceError(AnnotatorError):
    """The workspace does not exist or is not initialised."""


class ImageReadError(AnnotatorError):
    """An image or mask file cannot be read (empty, truncated, not an image, no pixel data)."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class MaskError(AnnotatorError):
    """A mask does not fit its image (size) or is not a mask."""


class ImportFailure(AnnotatorError):
    """One item of an import failed; the import goes on with the rest."""


class UnknownNameError(AnnotatorError, KeyError):
    """A name that is not in a registry; the message lists the valid ones."""

    def __init__(self, what: str, name: str, valid):
        self.what = what
        self.name = name
        self.valid = sorted(valid)
        super().__init__(f"unknown {what} {name!r}; valid: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class ModelError(AnnotatorError):
    """A model, checkpoint or weights file is unusable."""


class TrainingError(AnnotatorError):
    """Training cannot start or go on (empty set, no positive pixel, ...)."""


class LabelStudioError(AnnotatorError):
    """Label Studio is down, refuses our token, or answered something we cannot use."""


class ProtocolError(AnnotatorError):
    """An event that the protocol does not allow in an image's current state."""


class DatabaseBusyError(AnnotatorError):
    """Another process held the database's write lock for longer than we wait."""
