"""Helpers shared by the degradation tests (imported by test_degrade*.py; not a test file)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mfsr.data.degrade import DegradationConfig, FrameParams, JpegConfig, SequenceParams
from mfsr.data.images import read_rgb

# Textured, frontal LFW faces (250x250); the tests skip when ../shared/data is absent.
FACES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0001.jpg"]

# Like the clean preset: sub-pixel translation (max 1 LR px) and box sampling only; no rotation,
# zoom, blur, noise or compression unless a test turns them on.
OFF = DegradationConfig(
    name="test-off",
    motion=dataclasses.replace(DegradationConfig().motion, max_rotation=0.0, max_zoom=0.0),
    blur=dataclasses.replace(DegradationConfig().blur, sigma=(0.0, 0.0), motion_length=(0.0, 0.0)),
    noise=dataclasses.replace(
        DegradationConfig().noise, gaussian_sigma=(0.0, 0.0), poisson_peak=None
    ),
    jpeg=JpegConfig(quality=None),
)


def face(lfw_root: Path, name: str = FACES[0]) -> np.ndarray:
    path = lfw_root / name
    if not path.exists():
        pytest.skip(f"LFW photo {name} not found under {lfw_root}")
    return read_rgb(path)


def frame(shift=(0.0, 0.0), rotation=0.0, zoom=1.0, length=0.0, angle=0.0) -> FrameParams:
    return FrameParams((float(shift[0]), float(shift[1])), rotation, zoom, length, angle)


def seq(blur=0.0, gaussian=0.0, peak=None, quality=None, frames=None) -> SequenceParams:
    return SequenceParams(0, blur, gaussian, peak, quality, frames or [frame()])


def gray(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64).mean(axis=2)


def box(image: np.ndarray, s: int) -> np.ndarray:
    h, w = image.shape
    return image.reshape(h // s, s, w // s, s).mean(axis=(1, 3))
