"""Lung (and infection) segmentation: specs, factory, training, prediction, post-processing.

Light modules (no torch): ``registry`` (what a network is), ``postprocess``, ``transform``.
Heavy leaves (torch, smp): ``factory``, ``checkpoint``, ``train``, ``predict``, ``fastpath``.
"""
