"""Time the small components whose cost the code's comments used to state, in one run.

Each figure is the median of ``--calls`` calls after two warm-ups, on real LFW photos, in this
process with ``--threads`` torch/OpenCV threads (1: "one CPU core"). Prints a Markdown table
for docs/benchmarks.md ("Component timings"); the ratios in its last column compare two ways of
doing the same work measured in this same run.

    PYTHONPATH=src python3 benchmarks/components.py --lfw ../shared/data/lfw/images_deepfunneled
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mfsr import faces
from mfsr.data.degrade import Crop, load_degradation, synthesize_sequence
from mfsr.data.device_synthesis import plan_sequence, plan_shapes
from mfsr.data.images import read_rgb
from mfsr.losses.identity import IdentityLoss
from mfsr.metrics.device import psnr_ssim
from mfsr.metrics.ffr import analyze_face
from mfsr.metrics.pixel import psnr, ssim
from mfsr.metrics.sharpness import cpbd
from mfsr.models.registration import shift_image


def median_ms(fn: Callable[[], object], calls: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def photos(lfw: Path, count: int) -> list[np.ndarray]:
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[::300][:count]
    return [read_rgb(sorted(p.iterdir())[0]) for p in people]


def face_rows(images: list[np.ndarray], calls: int) -> list[tuple[str, float, str]]:
    """Detection, descriptor (PyTorch vs dlib), the FFR analysis of one image."""
    import dlib

    img224 = images[0][13:237, 13:237].copy()  # the central 224 x 224 of a 250 px LFW photo
    img256 = cv2.resize(images[0], (256, 256), interpolation=cv2.INTER_CUBIC)
    face = faces.detect_faces(img256, upsample=1)[0]
    rect = dlib.rectangle(
        round(face.left), round(face.top), round(face.right) - 1, round(face.bottom) - 1
    )
    shape = faces.get_shape_predictor()(img256, rect)
    ours = median_ms(lambda: faces.face_descriptor(img256, face), calls)
    theirs = median_ms(
        lambda: faces.get_recognizer().compute_face_descriptor(img256, shape, 0, 0.25), calls
    )
    return [
        ("dlib HOG detection, 224 x 224, upsample 0", median_ms(
            lambda: faces.detect_faces(img224, upsample=0), calls), ""),
        ("dlib HOG detection, 224 x 224, upsample 1", median_ms(
            lambda: faces.detect_faces(img224, upsample=1), calls), ""),
        ("face descriptor, PyTorch ResNet (mfsr)", ours, f"{theirs / ours:.1f}x faster"),
        ("face descriptor, dlib's compute_face_descriptor", theirs, ""),
        ("analyze_face (FFR), 256 x 256", median_ms(lambda: analyze_face(img256), calls), ""),
    ]  # fmt: skip


def metric_rows(images: list[np.ndarray], calls: int) -> list[tuple[str, float, str]]:
    """PSNR + SSIM (NumPy and torch float64 on the CPU), CPBD, per 256 x 256 image."""
    a = cv2.resize(images[0], (256, 256), interpolation=cv2.INTER_CUBIC)[None]
    b = cv2.resize(images[1], (256, 256), interpolation=cv2.INTER_CUBIC)[None]
    numpy_ms = median_ms(lambda: (psnr(a, b), ssim(a, b)), calls)
    faster = "{:.1f}x faster"
    ta = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255
    torch_ms = median_ms(lambda: psnr_ssim(ta, tb), calls)
    return [
        ("PSNR + SSIM, NumPy/OpenCV (metrics.pixel)", numpy_ms, faster.format(torch_ms / numpy_ms)),
        ("PSNR + SSIM, torch float64 on the CPU (metrics.device)", torch_ms, ""),
        ("CPBD sharpness (metrics.sharpness)", median_ms(lambda: cpbd(a[0]), calls), ""),
    ]  # fmt: skip


def training_rows(images: list[np.ndarray], calls: int) -> list[tuple[str, float, str]]:
    """Identity loss forward per face, device-synthesis plan vs CPU synthesis, the shift warp."""
    cfg, rng = load_degradation("default"), np.random.default_rng(0)
    image = images[2]
    crop = Crop.centred(image.shape[1], image.shape[0], None)
    shapes = plan_shapes([cfg], 256, 8)
    cpu = median_ms(lambda: synthesize_sequence(image, crop, 256, 8, 7, cfg, rng), calls)
    plan = median_ms(lambda: plan_sequence(image, crop, 256, 8, 7, cfg, rng, shapes), calls)
    batch = torch.stack(
        [torch.from_numpy(cv2.resize(im, (128, 128))).permute(2, 0, 1) for im in images]
    ).float() / 255  # fmt: skip
    batch = batch.repeat(40 // len(images) + 1, 1, 1, 1)[:40]
    loss = IdentityLoss()
    with torch.no_grad():
        identity = median_ms(lambda: loss(batch, batch.flip(0)), max(3, calls // 5)) / 40
    less, faster = "{:.1f}x less CPU", "{:.1f}x faster"
    frames = torch.rand(28, 3, 64, 64)
    shifts = torch.rand(28, 2) - 0.5
    ours = median_ms(lambda: shift_image(frames, shifts), calls)
    grid = _grid_sample_shift(frames, shifts)
    theirs = median_ms(grid, calls)
    return [
        ("identity loss forward, per sample (batch 40, 128 px)", identity, ""),
        ("x8 sequence, 7 frames: CPU synthesis (whole)", cpu, ""),
        ("x8 sequence, 7 frames: device-synthesis plan (CPU half)", plan, less.format(cpu / plan)),
        ("bicubic shift, 28 frames of 64 px, matrix products", ours, faster.format(theirs / ours)),
        ("the same with F.grid_sample(bicubic)", theirs, ""),
    ]  # fmt: skip


def _grid_sample_shift(frames: torch.Tensor, shifts: torch.Tensor) -> Callable[[], torch.Tensor]:
    _, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    gx = (xs[None] + shifts[:, 0, None, None]) / w * 2 - 1
    gy = (ys[None] + shifts[:, 1, None, None]) / h * 2 - 1
    grid = torch.stack([gx, gy], -1)
    return lambda: F.grid_sample(
        frames, grid, mode="bicubic", padding_mode="border", align_corners=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw/images_deepfunneled"))
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    images = photos(args.lfw, 8)
    rows = face_rows(images, args.calls) + metric_rows(images, args.calls)
    rows += training_rows(images, args.calls)
    load = os.getloadavg()[0]
    print(f"{args.threads} thread(s), torch {torch.__version__}, load average {load:.2f}\n")
    print("| component | ms | ratio in this run |\n|---|---|---|")
    for name, ms, ratio in rows:
        print(f"| {name} | {ms:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
