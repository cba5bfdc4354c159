"""PSNR and SSIM computed in torch on the tensors' own device, for validation during training.

The same definitions as :mod:`mfsr.metrics.pixel` (``docs/metrics.md``): 8-bit quantisation by
``round(255 x)`` half to even, per-image PSNR on the 0-255 scale capped at 100 dB, SSIM on RGB
with an 11 x 11 Gaussian window (sigma 1.5) averaged over the valid region, all in float64.
Values agree with :mod:`mfsr.metrics.pixel` to about 1e-12 (only the order of float64 sums
differs; ``tests/test_metrics.py``).

Training uses it on CUDA only, so that validation does not copy every output to the host; on
the CPU the NumPy path is the faster one (docs/benchmarks.md, "Component timings"). Not
torchmetrics: its SSIM averages over the reflect-padded border (docs/metrics.md).
"""

from __future__ import annotations

import torch

from mfsr.metrics.pixel import PEAK, PSNR_CAP_DB, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW


def quantize(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` float in [0, 1] (clamped) or uint8 -> float64 on the 0-255 scale, rounded
    half to even as saving a PNG would. NaN or infinite values raise ``ValueError``."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) tensor, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.double()
    if not images.is_floating_point():
        raise ValueError(f"expected a float or uint8 tensor, got {images.dtype}")
    x = images.double()
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"images contain {bad} NaN/inf values")
    return torch.round(x.clamp(0.0, 1.0) * PEAK)


def _window(device: torch.device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return g / g.sum()


def psnr_ssim(preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM of two ``(B, 3, H, W)`` batches, float64 ``(B,)`` each, on
    the inputs' device (``docs/metrics.md`` conventions)."""
    if preds.shape != target.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
    if min(preds.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} px, got {preds.shape[-2:]}")
    x, y = quantize(preds), quantize(target.to(preds.device))
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    psnr = torch.clamp(10.0 * torch.log10(PEAK * PEAK / mse), max=PSNR_CAP_DB)

    b, c, h, w = x.shape
    g = _window(x.device)
    # the five local means (x, y, x², y², xy) of every channel in one separable valid filter
    maps = torch.stack([x, y, x * x, y * y, x * y], dim=2).reshape(b * c * 5, 1, h, w)
    maps = torch.nn.functional.conv2d(maps, g.view(1, 1, -1, 1))
    maps = torch.nn.functional.conv2d(maps, g.view(1, 1, 1, -1))
    mx, my, mxx, myy, mxy = maps.reshape(b, c, 5, *maps.shape[-2:]).unbind(dim=2)
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return psnr, s.mean(dim=(2, 3)).mean(dim=1)
