"""Validation during training: PSNR and SSIM with ``mfsr evaluate``'s conventions, on the
device, one host sync per pass."""

from __future__ import annotations

from pathlib import Path

import torch

from mfsr.metrics.device import psnr_ssim
from mfsr.metrics.pixel import psnr, ssim
from mfsr.train.config import TrainConfig
from mfsr.train.data import ValBatches
from mfsr.train.logs import save_samples


def quality(sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM of (B, 3, H, W) [0, 1] tensors, float64 on their device,
    with the conventions of ``docs/metrics.md`` (8-bit quantised RGB). On the CPU: the NumPy
    functions ``mfsr evaluate`` uses; on CUDA: their torch twin on the GPU (equal to about
    1e-12), so validation neither copies outputs to the host nor waits for the GPU."""
    if sr.device.type == "cuda":
        return psnr_ssim(sr, hr)

    return torch.from_numpy(psnr(sr, hr)), torch.from_numpy(ssim(sr, hr))


@torch.no_grad()
def validate(
    model, loss_fn, val_batches: ValBatches, cfg: TrainConfig, run_dir: Path | None, epoch: int
) -> dict:
    """Loss, PSNR and SSIM on the validation samples; writes the epoch's sample image into
    ``run_dir`` (with ``cfg.samples`` > 0). Values stay on the device until the end: one host
    sync per pass, not one per batch."""
    model.eval()
    loss_fn.eval()
    losses, psnrs, ssims, first = [], [], [], None
    for frames, hr in val_batches:
        sr = model(frames).float()
        losses.append(loss_fn(sr, hr).double() * frames.shape[0])
        p, s = quality(sr, hr)
        psnrs.append(p)
        ssims.append(s)
        if first is None:
            ref = frames.shape[1] // 2
            first = (
                frames[: cfg.samples, ref].cpu(),
                sr[: cfg.samples].cpu(),
                hr[: cfg.samples].cpu(),
            )
    if cfg.samples and first is not None and run_dir is not None:
        save_samples(run_dir / "samples" / f"epoch_{epoch + 1:04d}.png", *first)
    n = sum(len(p) for p in psnrs)
    return {
        "loss": float(torch.stack(losses).sum()) / n,
        "psnr": float(torch.cat(psnrs).mean()),
        "ssim": float(torch.cat(ssims).mean()),
    }
