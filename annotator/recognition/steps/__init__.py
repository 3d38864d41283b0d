"""The recognition pipeline's steps, one module each: every step is a function of a ``RunContext``
(``context.py``) and of the networks earlier steps trained; ``report.py`` collects and writes what they
produce. ``annotator.recognition.pipeline`` runs them in order. Heavy leaves: they import torch."""
