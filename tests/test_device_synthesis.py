"""data.synthesis: device — the degradation model batched in torch, against the CPU path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from helpers import model_tensors, overrides
from mfsr.data import degrade
from mfsr.data.dataset import collate
from mfsr.data.device_synthesis import plan_sequence, plan_shapes, synthesize_batch
from mfsr.data.images import read_rgb
from mfsr.errors import MfsrError
from mfsr.train.config import load_train_config
from mfsr.train.loop import train

HR, SCALE, N = 256, 8, 7  # the paper geometry


@pytest.fixture(scope="module")
def photos(lfw_root) -> list[np.ndarray]:
    """Six real LFW photos of different people, plus one non-square cut (320 x 250, so the
    crop is off the photo's edge on two sides) and one small one (200 px: upscaled 1.28x)."""
    people = sorted(p for p in lfw_root.iterdir() if p.is_dir())[::900][:6]
    images = [read_rgb(sorted(p.iterdir())[0]) for p in people]
    wide = np.concatenate([images[0], images[1][:, :70]], axis=1)
    small = np.ascontiguousarray(images[2][25:225, 25:225])
    return [*images, wide, small]


def quiet(cfg: degrade.DegradationConfig, jpeg: bool = False) -> degrade.DegradationConfig:
    """``cfg`` without sensor noise (and without JPEG unless ``jpeg``)."""
    return dataclasses.replace(
        cfg,
        noise=degrade.NoiseConfig(gaussian_sigma=(0.0, 0.0), poisson_peak=None),
        jpeg=cfg.jpeg if jpeg else degrade.JpegConfig(quality=None),
    )


def both_paths(photos, cfg, seed: int = 0):
    """(device-path frames, device-path HR, CPU-path frames, CPU-path HR), uint8 NHWC numpy."""
    shapes = plan_shapes([cfg], HR, SCALE)
    items, cpu_lr, cpu_hr = [], [], []
    for i, photo in enumerate(photos):
        crop = degrade.Crop.centred(photo.shape[1], photo.shape[0])
        rng = np.random.default_rng([seed, i])
        plan, params = plan_sequence(photo, crop, HR, SCALE, N, cfg, rng, shapes)
        items.append({**plan, "id": str(i), "meta": {}})
        lr, hr, cpu_params = degrade.synthesize_sequence(
            photo, crop, HR, SCALE, N, cfg, np.random.default_rng([seed, i])
        )
        assert cpu_params == params  # same numpy stream: the same drawn parameters
        cpu_lr.append(np.stack(lr))
        cpu_hr.append(hr)
    frames, hr = synthesize_batch(collate(items), torch.device("cpu"), SCALE, HR, N // 2)
    to8 = lambda t: (t * 255).round().byte().numpy()  # noqa: E731
    return (
        to8(frames).transpose(0, 1, 3, 4, 2),
        to8(hr).transpose(0, 2, 3, 1),
        np.stack(cpu_lr),
        np.stack(cpu_hr),
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("preset", ["mild", "default", "severe"])
def test_device_path_equals_the_cpu_path_up_to_warp_rounding(photos, preset):
    """Same parameters, same model: without noise the two paths differ only by OpenCV's
    fixed-point warp (1/32 px, integer weights); with JPEG too, where such a grey level
    crosses a quantisation step."""
    cfg = degrade.load_degradation(preset)
    lr, hr, cpu_lr, cpu_hr = both_paths(photos, quiet(cfg))
    for i in range(len(photos)):
        assert psnr(hr[i], cpu_hr[i]) > 55, f"HR view of photo {i}"
        assert min(psnr(lr[i, k], cpu_lr[i, k]) for k in range(N)) > 55, f"LR of photo {i}"
    lr, _, cpu_lr, _ = both_paths(photos, quiet(cfg, jpeg=True))
    assert np.mean([psnr(a, b) for a, b in zip(lr, cpu_lr)]) > 40


def test_device_jpeg_is_pillows_at_each_sequences_quality(photos):
    """The JPEG stage alone: the same plans without and with JPEG (its own random stream, so
    the rest is unchanged); Pillow at each sequence's drawn quality turns the first into the
    second bit for bit (mfsr.data.jpeg, tests/test_jpeg.py)."""
    cfg = quiet(degrade.load_degradation("severe"), jpeg=True)
    shapes = plan_shapes([cfg], HR, SCALE)
    plain, coded, qualities = [], [], []
    for i, photo in enumerate(photos):
        crop = degrade.Crop.centred(photo.shape[1], photo.shape[0])
        for target, c in ((coded, cfg), (plain, quiet(cfg))):
            rng = np.random.default_rng(i)
            plan, params = plan_sequence(photo, crop, HR, SCALE, N, c, rng, shapes)
            target.append({**plan, "id": str(i), "meta": {}})
            if c is cfg:
                qualities.append(params.jpeg_quality)
    assert len(set(qualities)) > 3 and all(q > 0 for q in qualities)
    to8 = lambda t: (t * 255).round().byte().permute(0, 1, 3, 4, 2).numpy()  # noqa: E731
    device = torch.device("cpu")
    before = to8(synthesize_batch(collate(plain), device, SCALE, HR, N // 2)[0])
    after = to8(synthesize_batch(collate(coded), device, SCALE, HR, N // 2)[0])
    for i, q in enumerate(qualities):
        for k in range(N):
            np.testing.assert_array_equal(after[i, k], degrade.jpeg_roundtrip(before[i, k], q))


def test_device_noise_has_the_cpu_paths_strength(photos):
    """Noise realisations differ (torch vs numpy streams); their strength must not."""
    cfg = dataclasses.replace(degrade.load_degradation("severe"), jpeg=degrade.JpegConfig(None))
    noisy, _, cpu_noisy, _ = both_paths(photos, cfg, seed=1)
    clean, _, cpu_clean, _ = both_paths(photos, quiet(cfg), seed=1)
    for i in range(len(photos)):
        device_std = np.std(noisy[i].astype(float) - clean[i])
        cpu_std = np.std(cpu_noisy[i].astype(float) - cpu_clean[i])
        assert cpu_std > 1.0
        assert device_std == pytest.approx(cpu_std, rel=0.1), f"photo {i}"


def test_plans_cover_every_view_and_batches_are_reproducible(photos):
    """A plan refuses a view outside its window (checked on every frame); 40 sequences of the
    harshest preset on odd photos fit. The same plans give the same bits twice."""
    cfg = degrade.load_degradation("severe")
    shapes = plan_shapes([cfg, degrade.load_degradation("default")], HR, SCALE)
    items = []
    for seed in range(40):
        photo = photos[seed % len(photos)]
        crop = degrade.Crop.centred(photo.shape[1], photo.shape[0])
        rng = np.random.default_rng(seed)
        plan, _ = plan_sequence(photo, crop, HR, SCALE, N, cfg, rng, shapes)
        items.append({**plan, "id": str(seed), "meta": {}})
    batch = collate(items[:4])
    first = synthesize_batch(batch, torch.device("cpu"), SCALE, HR, N // 2)
    again = synthesize_batch(batch, torch.device("cpu"), SCALE, HR, N // 2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert first[0].shape == (4, N, 3, HR // SCALE, HR // SCALE)
    assert first[1].shape == (4, 3, HR, HR)


def test_training_with_device_synthesis_is_deterministic(tiny_dataset, tmp_path):
    data = tiny_dataset(32, (12, 4, 0), ("val",))
    runs = []
    for name in ("a", "b"):
        sets = overrides(data, tmp_path, "data.synthesis=device", "epochs=1", f"name={name}")
        summary = train(load_train_config("smoke", sets))
        assert summary["steps"] == 4
        runs.append(model_tensors(tmp_path / name))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    with pytest.raises(MfsrError, match="device needs data"):
        load_train_config(
            "smoke", overrides(data, tmp_path, "data.synthesis=device", "data.train=frozen")
        )
