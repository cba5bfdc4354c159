"""Baselines without trainable parameters: bicubic upsampling and classical shift-and-add.

Both take ``frames``: float tensor ``(B, N, C, h, w)`` in [0, 1] (reference frame at index
``N // 2``) and return ``(B, C, s*h, s*w)`` clamped to [0, 1], like the learned models.

Motion convention (the same as :mod:`mfsr.data.degrade`): frame ``k`` shows the scene moved by
``+t_k`` LR pixels relative to the reference, ``t_k = (dx, dy)`` with ``x`` to the right and ``y``
down. :func:`estimate_shifts` measures ``t_k``; :class:`ClassicalFusion` undoes it on the HR grid.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Reduce = Literal["mean", "median"]

#: RGB -> luma weights (ITU-R BT.601), used to register colour frames on one channel.
_LUMA = (0.299, 0.587, 0.114)

#: Frames with a side below this (px) are not registered (assumed unmoved).
MIN_REGISTRATION_SIZE = 4


def _check_frames(frames: torch.Tensor) -> None:
    if frames.dim() != 5:
        shape = tuple(frames.shape)
        raise ValueError(f"frames: expected a (B, N, C, h, w) tensor, got shape {shape}")


def bicubic_upsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, C, s*h, s*w)`` bicubic (``align_corners=False``), not clamped."""
    return F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False)


def _gray(frames: torch.Tensor) -> torch.Tensor:
    """``(..., C, h, w)`` -> ``(..., h, w)``: luma for 3 channels, the channel mean otherwise."""
    if frames.shape[-3] == 3:
        w = frames.new_tensor(_LUMA).view(3, 1, 1)
        return (frames * w).sum(dim=-3)
    return frames.mean(dim=-3)


def _dft_matrix(n: int, coords: torch.Tensor) -> torch.Tensor:
    """``(len(coords), n)`` complex matrix evaluating an inverse DFT of length ``n`` at ``coords``
    (pixel positions, fractional allowed): ``M[j, u] = exp(2πi u_f coords[j] / n)``."""
    freqs = torch.fft.fftfreq(n, dtype=torch.float64) * n
    phase = 2.0 * math.pi * coords.to(torch.float64)[:, None] * freqs[None, :] / n
    return torch.polar(torch.ones_like(phase), phase)


def _hann2d(h: int, w: int) -> torch.Tensor:
    return torch.outer(
        torch.hann_window(h, periodic=False, dtype=torch.float64),
        torch.hann_window(w, periodic=False, dtype=torch.float64),
    )


def phase_correlate(
    moving: torch.Tensor, reference: torch.Tensor, upsample: int = 32, cutoff: float = 0.15
) -> tuple[float, float]:
    """Sub-pixel translation ``(dx, dy)`` (pixels) such that ``moving(x) ≈ reference(x - d)``.

    ``moving``, ``reference``: ``(h, w)`` float tensors (grayscale). Method: Hann-windowed phase
    correlation whose normalised cross-power spectrum is weighted by a Gaussian of std ``cutoff``
    cycles/px (the high frequencies of a small, aliased LR face mislead plain phase correlation);
    the integer peak of the correlation surface is then refined to ``1/upsample`` px by evaluating
    the inverse DFT on a fine grid around it (matrix-multiply DFT, Guizar-Sicairos et al. 2008).
    Translation only: rotation and zoom are not modelled.
    """
    h, w = reference.shape
    win = _hann2d(h, w)
    a = (moving.double() - moving.double().mean()) * win
    b = (reference.double() - reference.double().mean()) * win
    cross = torch.fft.fft2(a) * torch.fft.fft2(b).conj()
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    cross = cross / (cross.abs() + 1e-12) * torch.exp(-(fx**2 + fy**2) / (2.0 * cutoff**2))
    surface = torch.fft.ifft2(cross).real
    py, px = divmod(int(torch.argmax(surface)), w)
    py = py - h if py > h // 2 else py
    px = px - w if px > w // 2 else px
    # Fine grid of +-1.5 px around the integer peak, step 1/upsample.
    offsets = torch.arange(-1.5 * upsample, 1.5 * upsample + 1, dtype=torch.float64) / upsample
    rows = _dft_matrix(h, py + offsets)  # (m, h)
    cols = _dft_matrix(w, px + offsets)  # (m, w)
    fine = (rows @ cross @ cols.T).real  # (m, m): correlation at (py + oy, px + ox)
    iy, ix = divmod(int(torch.argmax(fine)), fine.shape[1])
    return float(px + offsets[ix]), float(py + offsets[iy])


def refine_translation(
    moving: torch.Tensor, reference: torch.Tensor, start: tuple[float, float], iters: int = 10
) -> tuple[float, float]:
    """Refine a translation estimate (same convention as :func:`phase_correlate`) by
    Gauss-Newton least squares (Lucas-Kanade) on Hann-windowed ``(h, w)`` images: minimise
    ``sum win * (moving(x + d) - reference(x))^2`` over ``d``, resampling bicubically."""
    win = _hann2d(*reference.shape)
    mov, ref = moving.double()[None, None], reference.double()
    d = torch.tensor(start, dtype=torch.float64)
    for _ in range(iters):
        warped = shift_image(mov, d[None])[0, 0]
        gy, gx = torch.gradient(warped)
        err = (warped - ref) * win
        gxx, gxy, gyy = (gx * gx * win).sum(), (gx * gy * win).sum(), (gy * gy * win).sum()
        hess = torch.stack([torch.stack([gxx, gxy]), torch.stack([gxy, gyy])])
        grad = torch.stack([(gx * err).sum(), (gy * err).sum()])
        if float(torch.linalg.det(hess)) <= 1e-12:  # flat image: nothing to refine
            break
        step = torch.linalg.solve(hess, -grad)
        d = d + step
        if float(step.abs().max()) < 1e-4:
            break
    return float(d[0]), float(d[1])


def estimate_shifts(frames: torch.Tensor, refine: bool = True) -> torch.Tensor:
    """Shifts of every frame relative to the reference ``N // 2``, in LR pixels.

    ``frames``: ``(N, C, h, w)``. Returns float32 ``(N, 2)`` of ``(dx, dy)``: frame ``k`` shows
    the scene moved by ``+shift[k]`` (the reference row is zero). :func:`phase_correlate`, then
    :func:`refine_translation` (``refine``; a refinement that moves more than 1 px from the phase
    correlation result is discarded). Frames smaller than ``MIN_REGISTRATION_SIZE`` px are
    assumed unmoved. On clean 32x32 LFW faces the error is at most about 0.05 LR px (see
    ``tests/test_models.py``).
    """
    gray = _gray(frames.detach().double().cpu())
    ref = frames.shape[0] // 2
    out = torch.zeros(frames.shape[0], 2)
    if min(gray.shape[-2:]) < MIN_REGISTRATION_SIZE:  # too small to register: assume no motion
        return out
    for k in range(frames.shape[0]):
        if k != ref:
            coarse = phase_correlate(gray[k], gray[ref])
            d = refine_translation(gray[k], gray[ref], coarse) if refine else coarse
            if max(abs(a - b) for a, b in zip(d, coarse)) > 1.0:  # diverged: keep the coarse one
                d = coarse
            out[k] = torch.tensor(d)
    return out


def shift_image(
    image: torch.Tensor, shift: torch.Tensor, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Resample ``(N, C, h, w)`` images translated by ``-shift[k]`` input pixels, optionally onto
    a finer ``size = (H, W)`` grid in the same pass (one bicubic interpolation, not two).

    ``shift``: ``(N, 2)`` of ``(dx, dy)`` in input px. Output pixel centre ``X`` reads the input
    at ``u(X) + shift`` with ``u`` the ``align_corners=False`` map (as ``F.interpolate``); borders
    are replicated. This undoes a ``+shift`` motion. Returns ``(N, C, H, W)``, not clamped.
    """
    n, _, h, w = image.shape
    out_h, out_w = size if size is not None else (h, w)
    ys = (2.0 * torch.arange(out_h, dtype=image.dtype, device=image.device) + 1.0) / out_h - 1.0
    xs = (2.0 * torch.arange(out_w, dtype=image.dtype, device=image.device) + 1.0) / out_w - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    shift = shift.to(image.device, image.dtype)
    grid = torch.stack([gx, gy], dim=-1).expand(n, out_h, out_w, 2).clone()
    grid[..., 0] += (2.0 * shift[:, 0] / w).view(n, 1, 1)
    grid[..., 1] += (2.0 * shift[:, 1] / h).view(n, 1, 1)
    return F.grid_sample(image, grid, mode="bicubic", padding_mode="border", align_corners=False)


class Bicubic(nn.Module):
    """Bicubic upsampling of the reference frame, clamped to [0, 1]. No parameters."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, N, C, h, w)`` in [0, 1] -> ``(B, C, s*h, s*w)`` in [0, 1]."""
        _check_frames(frames)
        ref = frames[:, frames.shape[1] // 2]
        return bicubic_upsample(ref, self.scale).clamp(0.0, 1.0)


class ClassicalFusion(nn.Module):
    """Classical multi-frame SR: registration, shift-and-add, iterative back-projection.

    For each sequence: measure each frame's translation to the reference with
    :func:`estimate_shifts` (translation only, sub-pixel); resample every frame bicubically onto
    the HR grid moved back by its shift (:func:`shift_image`, one interpolation); fuse the aligned
    stack by the per-pixel mean (or median, robust to a badly registered frame); then refine by
    ``back_projection`` steps of iterative back-projection (Irani & Peleg 1991): re-simulate each
    LR frame from the estimate (move by ``+s*shift``, ``s x s`` box average, the sensor model of
    :mod:`mfsr.data.degrade`) and add the upsampled, re-aligned mean residual. Shift-and-add
    alone is about as sharp as bicubic; the back-projection is what recovers detail (about +2.5
    dB over bicubic on clean x4 LFW sequences with 10 steps; it gains little, or loses a little,
    under heavy noise/JPEG). Output clamped to [0, 1]. No trainable parameters; a Python loop
    over the batch, registration on the CPU.
    """

    def __init__(self, scale: int, reduce: Reduce = "mean", back_projection: int = 10) -> None:
        super().__init__()
        if reduce not in ("mean", "median"):
            raise ValueError(f"reduce must be 'mean' or 'median', got {reduce!r}")
        if back_projection < 0:
            raise ValueError(f"back_projection must be >= 0, got {back_projection}")
        self.scale, self.reduce, self.back_projection = int(scale), reduce, int(back_projection)

    def fuse(self, frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """One sequence ``(N, C, h, w)`` with known ``shifts`` ``(N, 2)`` (LR px, content moved
        by ``+shift``) -> ``(C, s*h, s*w)`` in [0, 1]."""
        s, (n, _, h, w) = self.scale, frames.shape
        hr_size = (s * h, s * w)
        aligned = shift_image(frames, shifts, hr_size)  # upsample + align in one resampling
        fused = aligned.mean(0) if self.reduce == "mean" else aligned.median(0).values
        for _ in range(self.back_projection):
            # Simulate each LR frame from the estimate (move by +shift, box-average s x s) and
            # spread the mean residual back onto the HR grid.
            moved = shift_image(fused.expand(n, *fused.shape), -s * shifts)
            residual = frames - F.avg_pool2d(moved, s)
            fused = fused + shift_image(residual, shifts, hr_size).mean(0)
        return fused.clamp(0.0, 1.0)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, N, C, h, w)`` in [0, 1] -> ``(B, C, s*h, s*w)`` in [0, 1]."""
        _check_frames(frames)
        with torch.no_grad():
            outs = [self.fuse(seq, estimate_shifts(seq)) for seq in frames]
        return torch.stack(outs)
