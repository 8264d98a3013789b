"""Evaluation metrics: FID / IS as the paper computes them, 2.5D FID, memorization check.

One file per metric (``fid``, ``inception_score``, ``fid_2p5d``, ``memorization``), the feature
network in ``inception``, a registry of metric wrappers in ``registry`` and the orchestration
(``evaluate``) in ``evaluate``. Import submodules directly (they import torch).
"""
