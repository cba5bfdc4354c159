"""Evaluation metrics: pure functions on batches, plus a per-image table.

========================  =================================================================
:mod:`.pixel`             ``mse``, ``psnr``, ``ssim`` (8-bit, per image; no torch)
:mod:`.device`            ``psnr_ssim``: the same PSNR/SSIM in torch on any device
:mod:`.sharpness`         ``cpbd``, ``cpbd_batch``, ``sharpness_difference`` (no torch)
:mod:`.perceptual`        ``LPIPSMetric``, ``lpips`` (torch; the loss's weights policy)
:mod:`.ffr`               dlib face analysis, descriptor cache, FFR counts, verification curve
:mod:`.stats`             ``bootstrap_ci``, ``mean_ci``
:mod:`.table`             ``image_metrics``, ``per_image_table``, CSV reading/writing
========================  =================================================================

Batches are torch tensors ``(B, 3, H, W)`` (float in [0, 1], quantised to 8 bits by rounding
first, or uint8) or NumPy ``uint8 (B, H, W, 3)`` arrays; results are float64 ``(B,)``. All
conventions are in ``docs/metrics.md``.

The package re-exports the torch-free names below, so worker processes that compute the NumPy
metrics never import torch; import ``LPIPSMetric``/``lpips`` from :mod:`.perceptual` and
``psnr_ssim`` from :mod:`.device`.
"""

from mfsr.metrics.ffr import (
    DescriptorCache,
    FaceAnalysis,
    analyze_face,
    ffr_summary,
    verification_curve,
)
from mfsr.metrics.pixel import PSNR_CAP_DB, mse, psnr, ssim, to_uint8_images
from mfsr.metrics.sharpness import cpbd, cpbd_batch, sharpness_difference
from mfsr.metrics.stats import bootstrap_ci, mean_ci
from mfsr.metrics.table import COLUMNS, FaceSettings, image_metrics, per_image_table

__all__ = [
    "COLUMNS",
    "PSNR_CAP_DB",
    "DescriptorCache",
    "FaceAnalysis",
    "FaceSettings",
    "analyze_face",
    "bootstrap_ci",
    "cpbd",
    "cpbd_batch",
    "ffr_summary",
    "image_metrics",
    "mean_ci",
    "mse",
    "per_image_table",
    "psnr",
    "sharpness_difference",
    "ssim",
    "to_uint8_images",
    "verification_curve",
]
