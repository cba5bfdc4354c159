"""Full-reference pixel metrics on 8-bit images: MSE, PSNR, SSIM (per image, float64).

Every function takes ``preds`` (the super-resolved outputs) and ``target`` (the true HR faces)
as a batch in one of two layouts (:func:`to_uint8_images`):

* a torch tensor ``(B, 3, H, W)``: float in [0, 1] (clamped, then quantised to 8 bits by
  rounding ``x * 255`` half to even, as saving the image as PNG would) or uint8;
* a NumPy ``uint8`` array ``(B, H, W, 3)`` (mfsr's image layout).

and returns a float64 NumPy array ``(B,)``, one value per image. Conventions:

* **MSE** on the 0-255 scale, mean over all pixels and the 3 RGB channels of one image.
* **PSNR** ``= 10 log10(255^2 / MSE)`` dB per image (to be averaged over images afterwards, not
  computed from the mean MSE). Identical images (MSE 0) would give infinity: PSNR is capped at
  :data:`PSNR_CAP_DB` (100 dB) for every image.
* **SSIM** (Wang et al. 2004) on RGB, each channel separately, then averaged: Gaussian window
  11 x 11 with sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, data range 255, population (not sample)
  covariances, averaged over the *valid* region where the window lies inside the image (a
  5-pixel border is excluded; no other border crop). This is scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255, channel_axis=-1)``; torchmetrics' SSIM with the same settings averages over
  the reflect-padded border too (up to about 0.01 higher or lower at 256 x 256), so mfsr takes
  the valid region of its full SSIM map.

Computed in float64 with OpenCV's separable filters, so the values agree with scikit-image to
about 1e-12. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PEAK = 255.0
PSNR_CAP_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def to_uint8_images(images: Any) -> np.ndarray:
    """A batch of images -> NumPy ``uint8 (B, H, W, 3)`` (see module docstring for layouts).

    Float tensors are clamped to [0, 1] and rounded (``round(255 x)``, half to even). NaN or
    infinite values raise ``ValueError``: they would otherwise turn into a silently wrong
    metric (a diverged model scored as a black image).
    """
    if hasattr(images, "detach"):  # a torch tensor: torch is already imported by the caller
        import torch

        t = images.detach().cpu()
        if t.dim() != 4 or t.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) tensor, got shape {tuple(t.shape)}")
        if t.is_floating_point():  # in NumPy float64: exact, and no torch thread-pool wake-ups
            if t.dtype not in (torch.float32, torch.float64):
                t = t.float()  # half, bfloat16
            x = t.numpy().astype(np.float64)
            if not np.isfinite(x).all():
                raise ValueError(
                    f"images contain {np.count_nonzero(~np.isfinite(x))} NaN/inf values"
                )
            x = np.clip(x, 0.0, 1.0) * PEAK
            return np.ascontiguousarray(np.rint(x).astype(np.uint8).transpose(0, 2, 3, 1))
        if t.dtype != torch.uint8:
            raise ValueError(f"expected a float or uint8 tensor, got {t.dtype}")
        return np.ascontiguousarray(t.permute(0, 2, 3, 1).numpy())
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(
            f"expected a uint8 (B, H, W, 3) array or a (B, 3, H, W) tensor, "
            f"got {arr.dtype} {arr.shape}"
        )
    return arr


def _pair(preds: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = to_uint8_images(preds), to_uint8_images(target)
    if p.shape != t.shape:
        raise ValueError(f"preds {p.shape} and target {t.shape} differ in shape")
    return p, t


def mse_image(pred: np.ndarray, target: np.ndarray) -> float:
    """MSE of one pair of ``uint8 (H, W, C)`` images on the 0-255 scale."""
    diff = pred.astype(np.float64) - target.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr_from_mse(mse: np.ndarray | float, cap_db: float = PSNR_CAP_DB) -> np.ndarray:
    """PSNR in dB (peak 255) from MSE values on the 0-255 scale, capped at ``cap_db``."""
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(PEAK * PEAK / mse)
    return np.minimum(value, cap_db)


def _gaussian_window() -> np.ndarray:
    x = np.arange(SSIM_WINDOW, dtype=np.float64) - SSIM_WINDOW // 2
    g = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return g / g.sum()


_WINDOW = _gaussian_window()


def _filter_valid(image: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local mean over the valid region: ``(H, W)`` -> ``(H-10, W-10)``."""
    import cv2  # lazy: mfsr.metrics stays importable without OpenCV's start-up cost

    r = SSIM_WINDOW // 2
    full = cv2.sepFilter2D(image, cv2.CV_64F, _WINDOW, _WINDOW, borderType=cv2.BORDER_REFLECT)
    return full[r:-r, r:-r]


def ssim_image(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of one pair of ``uint8 (H, W, C)`` images (module conventions), in [-1, 1]."""
    if min(pred.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} px, got {pred.shape[:2]}")
    c1 = (SSIM_K1 * PEAK) ** 2
    c2 = (SSIM_K2 * PEAK) ** 2
    values = []
    for c in range(pred.shape[2]):
        x = np.ascontiguousarray(pred[..., c], dtype=np.float64)
        y = np.ascontiguousarray(target[..., c], dtype=np.float64)
        mx, my = _filter_valid(x), _filter_valid(y)
        vx = _filter_valid(x * x) - mx * mx
        vy = _filter_valid(y * y) - my * my
        cxy = _filter_valid(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        values.append(float(s.mean()))
    return float(np.mean(values))


def mse(preds: Any, target: Any) -> np.ndarray:
    """Per-image MSE on the 0-255 scale, float64 ``(B,)``."""
    p, t = _pair(preds, target)
    return np.array([mse_image(a, b) for a, b in zip(p, t)], dtype=np.float64)


def psnr(preds: Any, target: Any, cap_db: float = PSNR_CAP_DB) -> np.ndarray:
    """Per-image PSNR in dB (peak 255, capped at ``cap_db``), float64 ``(B,)``."""
    return psnr_from_mse(mse(preds, target), cap_db)


def ssim(preds: Any, target: Any) -> np.ndarray:
    """Per-image SSIM (RGB, Gaussian 11 / 1.5, valid region), float64 ``(B,)``."""
    p, t = _pair(preds, target)
    return np.array([ssim_image(a, b) for a, b in zip(p, t)], dtype=np.float64)
