"""What a run writes besides checkpoints: environment, CSV logs, TensorBoard, sample images.

``train.csv``: step, epoch, loss, one column per loss term, lr, grad_norm, samples_per_s.
``val.csv``: step, epoch, loss, psnr, ssim, bicubic_psnr (PSNR/SSIM as in ``docs/metrics.md``:
per image on 8-bit quantised RGB, then averaged). Only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfsr.config import write_text_atomic
from mfsr.data.images import write_png
from mfsr.errors import about

TRAIN_FIELDS = ["step", "epoch", "loss", "terms", "lr", "grad_norm", "samples_per_s"]
VAL_FIELDS = ["step", "epoch", "loss", "psnr", "ssim", "bicubic_psnr"]


def environment(device: torch.device, world: int) -> dict[str, Any]:
    """Versions, git commit, device: enough to tell how a result was produced."""
    versions = {}
    for pkg in (
        "mfsr",
        "torch",
        "torchvision",
        "numpy",
        "lpips",
        "safetensors",
        "opencv-python-headless",
        "dlib-bin",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    here = Path(__file__).resolve().parent
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": commit,
        "git_dirty": dirty,
        "device": str(device),
        "world_size": world,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def truncate_csv(path: Path, max_step: int, fields: list[str]) -> None:
    """Drop rows logged after ``max_step`` (written before a crash, replayed after resume).

    Also repairs what a kill can leave behind: an empty file (killed between open and write),
    a missing header, or a torn last line (killed mid-write; it has no line end). The file is
    rewritten atomically with ``fields`` as its header; rows whose step is not an integer
    (the old header, a torn line) are dropped.
    """
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    kept = []
    for row in csv.DictReader(lines, fieldnames=fields):
        try:
            step = int(row["step"])
        except (TypeError, ValueError):
            continue
        if step <= max_step:
            kept.append(row)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(kept)
    write_text_atomic(path, text.getvalue())


class RunLog:
    """CSV + TensorBoard logging for rank 0 (all methods are no-ops on other ranks)."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        self.writer = None
        if not enabled:
            return
        # a fresh run over one that failed before its first checkpoint starts its logs empty
        keep = -1 if resume_step is None else resume_step
        truncate_csv(run_dir / "train.csv", keep, TRAIN_FIELDS)
        truncate_csv(run_dir / "val.csv", keep, VAL_FIELDS)
        from torch.utils.tensorboard import SummaryWriter  # lazy: slow import, only if asked

        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)

    def _append(self, name: str, fields: list[str], row: dict[str, Any]) -> None:
        path = self.run_dir / name
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields)
        # A kill between open and write leaves an empty file: it still needs the header.
        if not path.exists() or path.stat().st_size == 0:
            writer.writeheader()
        writer.writerow(row)
        with about(path), open(path, "a", newline="", encoding="utf-8") as handle:
            handle.write(text.getvalue())  # one write: a kill tears at most this row

    def train(self, step: int, epoch: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._append(
            "train.csv",
            TRAIN_FIELDS,
            {"step": step, "epoch": epoch, **values, "terms": json.dumps(values["terms"])},
        )
        self.writer.add_scalar("train/loss", values["loss"], step)
        for name, value in values["terms"].items():
            self.writer.add_scalar(f"train/{name}", value, step)
        self.writer.add_scalar("train/lr", values["lr"], step)
        self.writer.add_scalar("train/samples_per_s", values["samples_per_s"], step)

    def val(self, step: int, epoch: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._append("val.csv", VAL_FIELDS, {"step": step, "epoch": epoch, **values})
        for key in ("loss", "psnr", "ssim"):
            self.writer.add_scalar(f"val/{key}", values[key], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def save_samples(path: Path, lr_ref: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> None:
    """A PNG grid: one row per face, columns bicubic(LR reference) | output | HR.

    ``lr_ref``: (B, 3, h, w); ``sr``, ``hr``: (B, 3, H, W); all in [0, 1].
    """
    up = torch.nn.functional.interpolate(
        lr_ref, size=hr.shape[-2:], mode="bicubic", align_corners=False
    )
    rows = torch.cat([torch.cat([u, s, h], dim=2) for u, s, h in zip(up, sr, hr)], dim=1)
    image = (rows.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, np.ascontiguousarray(image))
