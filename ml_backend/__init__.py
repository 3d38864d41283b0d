"""cxr-annotator's ML backend for Label Studio: ``/health``, ``/setup``, ``/predict``, ``/webhook``.

A thin adapter over ``annotator.segmentation``: ``holder`` keeps the one loaded network (swapped when the
working network changes), ``app`` speaks the protocol (WSGI), ``server`` serves it. Run it with
``annotator serve backend``.
"""
