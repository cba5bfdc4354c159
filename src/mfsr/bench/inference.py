"""Inference and evaluation measurements: model time per sequence, metric time per image."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from mfsr.bench.training import time_calls
from mfsr.metrics import analyze_face, cpbd_batch, mse, psnr, ssim
from mfsr.metrics.perceptual import LPIPSMetric
from mfsr.models import build_model
from mfsr.train.config import TrainConfig


def inference(
    cfg: TrainConfig, frames: torch.Tensor, device: torch.device, batch_sizes: list[int], calls: int
) -> dict[str, Any]:
    """ms per sequence of the (untrained) model in eval mode under ``torch.inference_mode``,
    for each batch size; ``frames`` ``(B0, N, 3, h, w)`` is repeated to fill a batch. On CUDA
    with the training config's ``amp`` and ``channels_last``."""
    cuda = device.type == "cuda"
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device).eval()
    if cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp) if cuda else None
    out: dict[str, Any] = {}
    for size in batch_sizes:
        reps = -(-size // frames.shape[0])
        x = frames.repeat(reps, 1, 1, 1, 1)[:size].to(device)

        def run(x: torch.Tensor = x) -> None:
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
            ):
                model(x)

        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        seconds = statistics.median(time_calls(run, calls, 1, device))
        out[f"batch_{size}"] = {
            "ms_per_sequence": 1000 * seconds / size,
            "sequences_per_s": size / seconds,
            "cuda_peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        }
    return out


def _per_image_ms(fn: Any, n: int) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start) / n


def metrics(sr: np.ndarray, hr: np.ndarray, device: torch.device) -> dict[str, Any]:
    """ms per image (one output-HR pair) of every metric ``mfsr evaluate`` computes, in this
    process, on ``uint8 (B, H, W, 3)`` outputs and targets. ``ffr`` is dlib detection plus
    descriptor of both images (``mfsr evaluate`` caches the HR half across methods); LPIPS
    uses the AlexNet trunk (a random one of the same cost when the ImageNet file is absent)."""
    n = len(sr)
    lpips_metric = LPIPSMetric("alex", device, random_trunk=True)
    lpips_metric(sr[:1], hr[:1])  # warm-up: lazy initialisation
    analyze_face(hr[0])  # loads the dlib models
    times = {
        "mse_psnr": _per_image_ms(lambda: (mse(sr, hr), psnr(sr, hr)), n),
        "ssim": _per_image_ms(lambda: ssim(sr, hr), n),
        "sharpness_cpbd": _per_image_ms(lambda: (cpbd_batch(sr), cpbd_batch(hr)), n),
        "lpips": _per_image_ms(lambda: lpips_metric(sr, hr), n),
        "ffr_dlib": _per_image_ms(lambda: [analyze_face(x) for x in (*sr, *hr)], n),
    }
    total = sum(times.values())
    return {
        "images": n,
        "size": list(sr.shape[1:3]),
        "ms_per_image": times,
        "total_ms_per_image": total,
        "projected_753_s_one_process": total * 753 / 1000,
        "lpips_random_trunk": lpips_metric.random,
    }
