"""The COVID-19 recognition pipeline: infection segmentation, detection and quantification,
classification, Score-CAM and the recognition report.

Light modules (no torch): ``preprocessing``, ``augmentation``, ``quantification``, ``config``,
``dataset``, ``report``. Heavy leaves (torch): ``classifier``, ``scorecam``, ``infection``,
``pipeline``, ``predict``.
"""
