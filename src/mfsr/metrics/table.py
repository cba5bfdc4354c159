"""The per-image metric table: every metric of one (output, truth) pair in one row.

:func:`image_metrics` computes one row from two ``uint8 (H, W, 3)`` images with NumPy, OpenCV
and dlib only (no torch, so it runs in light worker processes); LPIPS is added by the caller
(:class:`mfsr.metrics.perceptual.LPIPSMetric`). :func:`per_image_table` does a whole batch
in this process. Columns (:data:`COLUMNS`; units and conventions in ``docs/metrics.md``):

* ``id``: sample id;
* ``mse``, ``psnr``, ``ssim``: 0-255 scale; dB, peak 255, capped at 100 dB; RGB, Gaussian
  11 / 1.5, valid region (:mod:`mfsr.metrics.pixel`);
* ``lpips``: LPIPS distance, empty when not computed (:mod:`mfsr.metrics.perceptual`);
* ``cpbd_hr``, ``cpbd_sr``: CPBD of the true HR image and of the output, in [0, 1];
  ``sharpness_diff`` = ``cpbd_hr - cpbd_sr``, positive when the output is blurrier than the
  truth (:mod:`mfsr.metrics.sharpness`);
* ``hr_face``, ``sr_face``: 1 if dlib finds a face in the HR image / the output, else 0;
  ``hr_face_score``, ``sr_face_score``: detection score of the described face (empty if none);
* ``identity_distance``: descriptor distance output <-> HR (empty unless both have a face);
* ``ffr_no_face``: 1 if the output has no face; ``ffr_identity``: 1 if the output fails the
  identity test (empty if the HR has no face) (:mod:`mfsr.metrics.ffr`).

Face columns are empty when FFR is switched off.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfsr.errors import about
from mfsr.metrics import ffr as ffr_mod
from mfsr.metrics.ffr import DescriptorCache, FaceAnalysis
from mfsr.metrics.pixel import mse_image, psnr_from_mse, ssim_image, to_uint8_images
from mfsr.metrics.sharpness import cpbd

COLUMNS = (
    "id",
    "mse",
    "psnr",
    "ssim",
    "lpips",
    "cpbd_hr",
    "cpbd_sr",
    "sharpness_diff",
    "hr_face",
    "sr_face",
    "hr_face_score",
    "sr_face_score",
    "identity_distance",
    "ffr_no_face",
    "ffr_identity",
)


@dataclass(frozen=True)
class FaceSettings:
    """FFR settings (see :mod:`mfsr.metrics.ffr`); ``enabled=False`` skips dlib entirely."""

    enabled: bool = True
    min_score: float = ffr_mod.MIN_SCORE
    upsample: int = ffr_mod.UPSAMPLE
    threshold: float = ffr_mod.THRESHOLD


def image_metrics(
    sr: np.ndarray,
    hr: np.ndarray,
    faces: FaceSettings = FaceSettings(),
    hr_face: FaceAnalysis | None = None,
) -> tuple[dict[str, Any], FaceAnalysis | None]:
    """All metrics but LPIPS of one pair of ``uint8 (H, W, 3)`` images.

    ``hr_face``: the HR image's face analysis if already known (e.g. from the descriptor cache);
    otherwise it is computed. Returns ``(row, hr_face)`` where ``row`` has every column of
    :data:`COLUMNS` but ``id`` and ``lpips``, and ``hr_face`` is the analysis used (None with
    FFR off), so callers can cache it.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"output {sr.shape} and HR {hr.shape} differ in shape")
    error = mse_image(sr, hr)
    row: dict[str, Any] = {
        "mse": error,
        "psnr": float(psnr_from_mse(error)),
        "ssim": ssim_image(sr, hr),
    }
    row["cpbd_hr"] = cpbd(hr)
    row["cpbd_sr"] = cpbd(sr)
    row["sharpness_diff"] = row["cpbd_hr"] - row["cpbd_sr"]
    if not faces.enabled:
        return row, None
    if hr_face is None:
        hr_face = ffr_mod.analyze_face(hr, faces.min_score, faces.upsample)
    sr_face = ffr_mod.analyze_face(sr, faces.min_score, faces.upsample)
    distance = ffr_mod.descriptor_distance(sr_face, hr_face)
    row.update(
        {
            "hr_face": int(hr_face.found),
            "sr_face": int(sr_face.found),
            "hr_face_score": hr_face.score,
            "sr_face_score": sr_face.score,
            "identity_distance": distance,
            "ffr_no_face": int(not sr_face.found),
            "ffr_identity": (
                int(not sr_face.found or distance > faces.threshold) if hr_face.found else None
            ),
        }
    )
    return row, hr_face


def worker_init() -> None:
    """Initialiser of worker processes: one OpenCV and one torch thread each (the workers
    already share the cores between them; torch runs the face descriptor network)."""
    import cv2  # lazy: only the worker processes need these settings
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def per_image_table(
    preds: Any,
    target: Any,
    ids: Sequence[str],
    faces: FaceSettings = FaceSettings(),
    lpips: Any = None,
    cache: DescriptorCache | None = None,
) -> list[dict[str, Any]]:
    """One row per image of a batch (this process, serially).

    ``preds``/``target``: batches as accepted by :func:`mfsr.metrics.pixel.to_uint8_images`.
    ``lpips``: an :class:`mfsr.metrics.perceptual.LPIPSMetric` (or any callable on the two batches
    returning ``(B,)``), or None to leave the column empty. ``cache``: HR face analyses are
    read from / written to it.
    """
    p, t = to_uint8_images(preds), to_uint8_images(target)
    if p.shape != t.shape or len(ids) != len(p):
        raise ValueError(f"preds {p.shape}, target {t.shape} and {len(ids)} ids do not match")
    lp = lpips(p, t) if lpips is not None else [None] * len(p)
    rows = []
    for sample_id, sr, hr, lp_value in zip(ids, p, t, lp):
        known, key = None, None
        if faces.enabled and cache is not None:
            key = ffr_mod.cache_key(hr, faces.min_score, faces.upsample)
            known = cache.get(key)
        row, hr_face = image_metrics(sr, hr, faces, known)
        if key is not None and known is None and hr_face is not None:
            cache.put(key, hr_face)  # type: ignore[union-attr]
        rows.append(make_row(sample_id, row, lp_value))
    return rows


def make_row(sample_id: str, metrics: dict[str, Any], lpips_value: float | None) -> dict[str, Any]:
    """A complete row (every column, missing ones None) from :func:`image_metrics`' output."""
    lp = None if lpips_value is None else float(lpips_value)
    return {c: metrics.get(c) for c in COLUMNS} | {"id": sample_id, "lpips": lp}


def column(rows: Sequence[dict[str, Any]], name: str) -> np.ndarray:
    """One column as float64 ``(N,)``; None/empty cells become NaN."""
    return np.array(
        [np.nan if r.get(name) is None else float(r[name]) for r in rows], dtype=np.float64
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write rows with the :data:`COLUMNS` header; None/NaN cells are empty, floats exact."""
    path = Path(path)
    with about(path), path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in COLUMNS])


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a table written by :func:`write_csv` (numbers as float, empty cells as None)."""
    rows = []
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {"id": raw["id"]}
            for name in COLUMNS[1:]:
                text = raw.get(name, "")
                row[name] = float(text) if text else None
            rows.append(row)
    return rows
