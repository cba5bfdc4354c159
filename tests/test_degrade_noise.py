"""The degradation model's noise and JPEG steps do what their parameters say.

Each test measures a property of the output (a shift, a rotation, a blur width, a noise level,
the JPEG step, determinism, config checking) and compares it with the requested value under a
tolerance stated next to the assertion, with where it comes from. Clean measurements use images
the test draws (dots, bars, flat grey); texture-dependent ones use real LFW faces.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from degrade_helpers import OFF, face, frame, seq
from mfsr.data.degrade import (
    Crop,
    JpegConfig,
    SequenceParams,
    degrade_view,
    degrade_views,
    jpeg_roundtrip,
    load_degradation,
    render_view,
    sample_params,
    synthesize_sequence,
)

# --------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------

FLAT = 128  # grey level of the flat test image; 128/255 = 0.502 in [0, 1]
NOISE_HR = 512  # x4 -> 128 x 128 x 3 = 49,152 LR samples per frame


def flat_lr(params: SequenceParams, seed: int = 0, level: int = FLAT) -> np.ndarray:
    img = np.full((NOISE_HR, NOISE_HR, 3), level, np.uint8)
    return degrade_view(img, 4, params, params.frames[0], np.random.default_rng(seed)).astype(
        np.float64
    )


def std_tolerance(std: float, n: int) -> float:
    # 4 standard errors of a sample std (SE ≈ std / sqrt(2 n) for near-normal data).
    return 4 * std / math.sqrt(2 * n)


@pytest.mark.parametrize("g", [1.5, 6.0])
def test_gaussian_noise_level(g):
    lr = flat_lr(seq(gaussian=g))
    n = lr.size
    # Rounding to 8 bits adds 1/12 grey level² (Sheppard; exact to < 1e-9 for g >= 1).
    expected = math.sqrt(g**2 + 1 / 12)
    # 4 SE = 1.3% relative; at g = 1.5 the rounding term alone is 1.8%, so it is resolved.
    assert lr.std() == pytest.approx(expected, abs=std_tolerance(expected, n))
    assert lr.mean() == pytest.approx(FLAT, abs=4 * expected / math.sqrt(n))


@pytest.mark.parametrize("peak,level", [(200.0, 128), (2000.0, 128), (200.0, 32)])
def test_poisson_noise_level(peak, level):
    lr = flat_lr(seq(peak=peak), level=level)
    x = level / 255.0
    # Poisson(P x) / P has std sqrt(x / P) in [0, 1] units; rounding adds 1/12 grey level².
    expected = math.sqrt(255.0**2 * x / peak + 1 / 12)
    assert lr.std() == pytest.approx(expected, abs=std_tolerance(expected, lr.size))
    assert lr.mean() == pytest.approx(level, abs=4 * expected / math.sqrt(lr.size))


def test_poisson_and_gaussian_add_in_variance():
    lr = flat_lr(seq(gaussian=4.0, peak=500.0))
    expected = math.sqrt(4.0**2 + 255.0**2 * (FLAT / 255.0) / 500.0 + 1 / 12)
    assert lr.std() == pytest.approx(expected, abs=std_tolerance(expected, lr.size))


def test_noise_is_fresh_per_frame():
    img = np.full((NOISE_HR, NOISE_HR, 3), FLAT, np.uint8)
    params = seq(gaussian=6.0, frames=[frame(), frame()])
    a, b = (
        f.astype(np.float64) - FLAT
        for f in degrade_views([img, img], 4, params, np.random.default_rng(0))
    )
    r = float((a * b).mean() / (a.std() * b.std()))
    # Independent realisations: |correlation| < 4 / sqrt(n) (4 standard errors).
    assert abs(r) < 4 / math.sqrt(a.size)


# --------------------------------------------------------------------------------------------
# JPEG
# --------------------------------------------------------------------------------------------


def test_jpeg_is_last_step_at_drawn_quality(lfw_root):
    """Frames = jpeg_roundtrip(the same frames without JPEG, q): same rng, noise on, so JPEG is
    applied after noise and draws nothing from the rng."""
    image = face(lfw_root)
    cfg = dataclasses.replace(load_degradation("default"), jpeg=JpegConfig(quality=(40, 90)))
    crop = Crop.centred(250, 250)
    frames, _, params = synthesize_sequence(image, crop, 256, 4, 5, cfg, np.random.default_rng(21))
    assert 40 <= params.jpeg_quality <= 90
    rng = np.random.default_rng(21)
    params_again = sample_params(cfg, 5, rng)
    assert params_again == params
    views = [render_view(image, crop, 256, 4, fp) for fp in params.frames]
    raw = degrade_views(views, 4, dataclasses.replace(params, jpeg_quality=None), rng)
    for k, (f, r) in enumerate(zip(frames, raw)):
        assert np.array_equal(f, jpeg_roundtrip(r, params.jpeg_quality)), f"frame {k}"
        assert not np.array_equal(f, r)


def test_fixed_jpeg_quality_and_lower_quality_costs_more(lfw_root):
    image = face(lfw_root)
    crop = Crop.centred(250, 250)
    errors = []
    for q in (20, 50, 90):
        cfg = dataclasses.replace(OFF, jpeg=JpegConfig(quality=(q, q)))
        frames, _, params = synthesize_sequence(
            image, crop, 256, 4, 3, cfg, np.random.default_rng(4)
        )
        assert params.jpeg_quality == q
        # Same seed, JPEG off: the same motion draws (quality [q, q] takes no rng draw).
        plain, _, _ = synthesize_sequence(image, crop, 256, 4, 3, OFF, np.random.default_rng(4))
        for f, p in zip(frames, plain):
            assert np.array_equal(f, jpeg_roundtrip(p, q))
        errors.append(np.mean([((f.astype(float) - p) ** 2).mean() for f, p in zip(frames, plain)]))
    # Strictly decreasing error with quality; the ratios are large (measured >2x per step).
    assert errors[0] > 1.5 * errors[1] > 0
    assert errors[1] > 1.5 * errors[2] > 0
