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

Names are imported lazily (``from mfsr.metrics import psnr`` imports only what it needs), so
worker processes that compute the NumPy metrics never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "to_uint8_images": "pixel",
    "mse": "pixel",
    "psnr": "pixel",
    "ssim": "pixel",
    "PSNR_CAP_DB": "pixel",
    "cpbd": "sharpness",
    "cpbd_batch": "sharpness",
    "sharpness_difference": "sharpness",
    "LPIPSMetric": "perceptual",
    "lpips": "perceptual",
    "FaceAnalysis": "ffr",
    "DescriptorCache": "ffr",
    "analyze_face": "ffr",
    "ffr_summary": "ffr",
    "verification_curve": "ffr",
    "bootstrap_ci": "stats",
    "mean_ci": "stats",
    "COLUMNS": "table",
    "FaceSettings": "table",
    "image_metrics": "table",
    "per_image_table": "table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"mfsr.metrics.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mfsr.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
