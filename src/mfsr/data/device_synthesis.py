"""The degradation model of :mod:`mfsr.data.degrade`, with its pixel work on the training device.

``data.synthesis: device`` splits each training sample in two:

* **Loader workers** (CPU, per sample; :func:`plan_sequence`): decode the photo, draw the
  parameters exactly as the CPU path does (same ``numpy`` stream, so the same motion, blur,
  noise strength and JPEG quality), and cut the part of the photo the 7 views will sample,
  uncropped and unresampled (mirrored where it leaves the photo), plus the warp matrices and the
  blur kernels: a tenth of the whole CPU synthesis (docs/benchmarks.md, "Component timings").
* **The device** (per batch; :func:`synthesize_batch`): bicubic warps (``grid_sample``), the
  Gaussian and motion-line PSF (grouped convolutions), box sampling (``avg_pool2d``), Poisson +
  Gaussian noise, 8-bit rounding and JPEG (:mod:`mfsr.data.jpeg`: libjpeg's arithmetic in
  torch, bit-identical to the CPU path's Pillow, each sequence at its own quality), all batched,
  with no host synchronisation.

Same model, same parameters; not the same bits: OpenCV's warp works in fixed point (1/32 px
coordinates, uint8 weights), and the noise comes from a torch generator (seeded per batch from
the samples' streams: reproducible, resume-exact) instead of the sample's ``numpy`` stream.
``tests/test_device_synthesis.py`` measures the difference against the CPU path on real faces
(docs/data.md). Hand-written rather than a library's (kornia, for one, is not a dependency)
because it must follow mfsr's own degradation model step for step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from mfsr.data.degrade import (
    Crop,
    DegradationConfig,
    SequenceParams,
    psf_kernel,
    sample_params,
    shrink_source,
    view_matrix,
)
from mfsr.data.jpeg import jpeg_roundtrip
from mfsr.errors import MfsrError

#: Keys a plan adds to a sample (stacked by :func:`mfsr.data.dataset.collate`).
PLAN_KEYS = ("source", "warp", "gauss", "line", "noise", "jpeg", "noise_seed")
_BICUBIC_REACH = 3  # px around a sampled point that bicubic interpolation reads (2) + rounding


def gaussian_size(sigma_hr: float) -> int:
    """Taps of the Gaussian PSF the CPU path applies at ``sigma_hr`` HR px (1 for none)."""
    if sigma_hr <= 0:
        return 1
    if sigma_hr < 0.8:
        return 3
    return int(np.rint(sigma_hr * 8 + 1)) | 1  # OpenCV's size for float images


def gaussian_taps(sigma_hr: float) -> np.ndarray:
    """The 1-D Gaussian PSF of the CPU path (``degrade_view``), float32, odd length."""
    if sigma_hr <= 0:
        return np.ones(1, dtype=np.float32)
    if sigma_hr < 0.8:
        a = sigma_hr**2 / 2.0
        return np.array([a, 1.0 - 2.0 * a, a], dtype=np.float32)
    return cv2.getGaussianKernel(gaussian_size(sigma_hr), sigma_hr).ravel().astype(np.float32)


def line_size(length_hr: float) -> int:
    """Side of the motion-line kernel at ``length_hr`` HR px (``psf_kernel``'s size)."""
    return 1 if length_hr <= 0 else 2 * (int(math.ceil(length_hr / 2.0)) + 1) + 1


def plan_shapes(presets: Sequence[DegradationConfig], hr_size: int, scale: int) -> dict[str, int]:
    """Fixed sizes of a plan's arrays for these presets (every sample of a batch must match):
    ``window`` (side of the source cut-out), ``gauss`` and ``line`` (kernel sides)."""
    half = 0.0
    for cfg in presets:
        m = cfg.motion
        turn = math.radians(m.max_rotation)
        # dst offsets <= hr/2 + s*T, through rotation (|cos|+|sin|), zoom and the crop scale
        # f = hr/side >= 0.8 (shrink_source guarantees it)
        reach = (hr_size / 2 + scale * m.max_shift) * (math.cos(turn) + math.sin(turn))
        half = max(half, reach / (0.8 * (1 - m.max_zoom)))
    return {
        "window": 2 * math.ceil(half + 0.5 + _BICUBIC_REACH) + 1,
        "gauss": max(gaussian_size(c.blur.sigma[1] * scale) for c in presets),
        "line": max(line_size(c.blur.motion_length[1] * scale) for c in presets),
    }


def _centred(kernel: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad an odd-sided 1-D or square kernel to ``size`` (odd), keeping its centre."""
    pad = (size - kernel.shape[0]) // 2
    if pad < 0:
        raise MfsrError(f"kernel of {kernel.shape[0]} taps exceeds the plan's {size}")
    return np.pad(kernel, [(pad, pad)] * kernel.ndim)


def plan_sequence(
    source: np.ndarray,
    crop: Crop,
    hr_size: int,
    scale: int,
    n_frames: int,
    cfg: DegradationConfig,
    rng: np.random.Generator,
    shapes: dict[str, int],
) -> tuple[dict[str, torch.Tensor], SequenceParams]:
    """The CPU half of one sequence: tensors for :func:`synthesize_batch` and the drawn
    parameters (equal to :func:`~mfsr.data.degrade.synthesize_sequence`'s for the same ``rng``).

    ``source``: the photo, uint8 ``(H, W, 3)``; ``shapes``: from :func:`plan_shapes`.
    """
    if hr_size % scale:
        raise MfsrError(f"HR size {hr_size} is not divisible by the scale {scale}")
    params = sample_params(cfg, n_frames, rng)
    noise_seed = int(rng.integers(2**62))
    source, crop = shrink_source(source, crop, hr_size)
    side = shapes["window"]
    x0, y0 = round(crop.cx) - side // 2, round(crop.cy) - side // 2
    warps = []
    corners = np.array([[0, 0, hr_size - 1, hr_size - 1], [0, hr_size - 1, 0, hr_size - 1]])
    for frame in params.frames:
        inverse = cv2.invertAffineTransform(view_matrix(crop, hr_size, scale, frame))
        inverse[:, 2] -= (x0, y0)  # canvas px -> window px
        reach = inverse[:, :2] @ corners + inverse[:, 2:]
        if reach.min() < _BICUBIC_REACH or reach.max() > side - 1 - _BICUBIC_REACH:
            raise MfsrError(f"a view reaches outside the {side} px source window (a bug)")
        warps.append(inverse)
    h, w = source.shape[:2]
    pads = (max(0, -y0), max(0, y0 + side - h), max(0, -x0), max(0, x0 + side - w))
    padded = cv2.copyMakeBorder(source, *pads, cv2.BORDER_REFLECT_101)
    window = padded[y0 + pads[0] : y0 + pads[0] + side, x0 + pads[2] : x0 + pads[2] + side]
    lines = []
    for frame in params.frames:
        line = psf_kernel(0.0, frame.motion_length * scale, frame.motion_angle)
        line = np.ones((1, 1), np.float32) if line is None else line
        lines.append(_centred(line, shapes["line"]))
    plan = {
        "source": torch.from_numpy(np.ascontiguousarray(window.transpose(2, 0, 1))),
        "warp": torch.from_numpy(np.stack(warps)).float(),
        "gauss": torch.from_numpy(
            _centred(gaussian_taps(params.blur_sigma * scale), shapes["gauss"])
        ),
        "line": torch.from_numpy(np.stack(lines)).float(),
        "noise": torch.tensor([params.poisson_peak or 0.0, params.gaussian_sigma]),
        "jpeg": torch.tensor(params.jpeg_quality or 0),
        "noise_seed": torch.tensor(noise_seed),
    }
    return plan, params


def _grouped(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Correlate each of the C planes of ``x`` (1, C, H, W) with its own kernel (C, kh, kw),
    mirrored borders (OpenCV's BORDER_REFLECT_101), same size out."""
    kh, kw = weight.shape[-2:]
    if kh == kw == 1:
        return x * weight.view(1, -1, 1, 1)
    x = torch.nn.functional.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")
    return torch.nn.functional.conv2d(x, weight.unsqueeze(1), groups=weight.shape[0])


def synthesize_batch(
    batch: dict[str, Any], device: torch.device, scale: int, hr_size: int, reference: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The device half: plans (collated) -> ``frames`` float32 ``(B, N, 3, h, w)`` and ``hr``
    float32 ``(B, 3, H, W)``, both in [0, 1] on ``device`` (see the module docstring)."""
    source = batch["source"].to(device, non_blocking=True).float()
    warp = batch["warp"].to(device, non_blocking=True)  # (B, N, 2, 3) canvas px -> window px
    b, n = warp.shape[:2]
    side = source.shape[-1]
    # one grid of N views stacked along y samples the batch's window once (no copies per view)
    ys, xs = torch.meshgrid(
        torch.arange(hr_size, device=device, dtype=torch.float32),
        torch.arange(hr_size, device=device, dtype=torch.float32),
        indexing="ij",
    )
    canvas = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (H, W, 3)
    points = torch.einsum("bnij,hwj->bnhwi", warp, canvas)  # window px, (B, N, H, W, 2)
    grid = (points * (2.0 / (side - 1)) - 1.0).reshape(b, n * hr_size, hr_size, 2)
    views = torch.nn.functional.grid_sample(
        source, grid, mode="bicubic", padding_mode="border", align_corners=True
    )
    views = views.reshape(b, 3, n, hr_size, hr_size).transpose(1, 2)
    views = views.clamp(0.0, 255.0).round()  # 8-bit views, as OpenCV's uint8 warp writes
    hr = views[:, reference] / 255.0

    x = (views / 255.0).reshape(1, b * n * 3, hr_size, hr_size)
    gauss = batch["gauss"].to(device, non_blocking=True)  # (B, K)
    gauss = gauss.repeat_interleave(n * 3, dim=0)
    x = _grouped(x, gauss.unsqueeze(1))  # along x, then along y: separable
    x = _grouped(x, gauss.unsqueeze(2))
    lines = batch["line"].to(device, non_blocking=True).repeat_interleave(3, dim=1)
    x = _grouped(x, lines.reshape(b * n * 3, *lines.shape[-2:]))
    if scale > 1:
        x = torch.nn.functional.avg_pool2d(x, scale)
    y = x.reshape(b, n, 3, hr_size // scale, hr_size // scale)

    noise = batch["noise"]  # on the CPU: branching on it costs no device sync
    peak = noise[:, 0].to(device, torch.float32, non_blocking=True).view(b, 1, 1, 1, 1)
    sigma = noise[:, 1].to(device, torch.float32, non_blocking=True).view(b, 1, 1, 1, 1)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(batch["noise_seed"][0]))
    if bool((noise[:, 0] > 0).any()):
        counts = torch.poisson(y.clamp(min=0.0) * peak, generator=gen)
        y = torch.where(peak > 0, counts / peak.clamp(min=1e-12), y)
    if bool((noise[:, 1] > 0).any()):
        y = y + torch.randn(y.shape, generator=gen, device=device) * (sigma / 255.0)
    lr = (y * 255.0).round().clamp(0, 255).to(torch.uint8)
    quality = batch["jpeg"].to(device, non_blocking=True).repeat_interleave(n)
    lr = jpeg_roundtrip(lr.flatten(0, 1), quality).view(lr.shape)
    return lr.float() / 255.0, hr
