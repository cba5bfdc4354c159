"""Metrics: agreement with scikit-image and the reference CPBD, sharpness sign, dlib FFR,
descriptor cache, bootstrap intervals. Real LFW faces at 256 x 256 (few of them: the
descriptor costs about 60 ms per face)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mfsr.errors import MfsrError
from mfsr.metrics import ffr, pixel, sharpness, stats, table
from mfsr.metrics.ffr import DescriptorCache, FaceAnalysis

random_trunk_ok = pytest.mark.filterwarnings("ignore::mfsr.weights.RandomTrunkWarning")


def load_face(path: Path, size: int = 256) -> np.ndarray:
    """An LFW photo (250 px) resized to ``size`` like ``mfsr data build --crop whole``."""
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC))


def bicubic_x8(face: np.ndarray) -> np.ndarray:
    """Box-downsample by 8, bicubic back up: a typical x8 baseline output."""
    h, w = face.shape[:2]
    small = cv2.resize(face, (w // 8, h // 8), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def blurred(face: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    return cv2.GaussianBlur(face, (0, 0), sigma)


def unsharp(face: np.ndarray, amount: float = 1.5, sigma: float = 1.0) -> np.ndarray:
    soft = cv2.GaussianBlur(face.astype(np.float64), (0, 0), sigma)
    sharp = face + amount * (face.astype(np.float64) - soft)
    return np.clip(np.round(sharp), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def faces(lfw_root) -> list[np.ndarray]:
    """Five real faces from different identities (fixed choice)."""
    people = sorted(p for p in lfw_root.iterdir() if p.is_dir())[::1100][:5]
    return [load_face(sorted(p.iterdir())[0]) for p in people]


def texts(rows: list[dict]) -> list[list[str]]:
    """Rows as strings (NaN == NaN), for comparing tables."""
    return [[str(r[c]) for c in table.COLUMNS] for r in rows]


# --- MSE, PSNR, SSIM against scikit-image --------------------------------------------------------


def test_pixel_metrics_agree_with_scikit_image(faces):
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

    hr = np.stack(faces[:3])
    rng = np.random.default_rng(0)
    noisy = np.clip(hr + rng.normal(0, 12, hr.shape), 0, 255).astype(np.uint8)
    for sr in (np.stack([bicubic_x8(f) for f in hr]), noisy):
        ref_mse = [mean_squared_error(t, p) for p, t in zip(sr, hr)]
        ref_psnr = [peak_signal_noise_ratio(t, p, data_range=255) for p, t in zip(sr, hr)]
        ref_ssim = [
            structural_similarity(
                p,
                t,
                data_range=255,
                channel_axis=2,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for p, t in zip(sr, hr)
        ]
        # Tolerances: float64 everywhere, so only summation order differs.
        np.testing.assert_allclose(pixel.mse(sr, hr), ref_mse, rtol=1e-12)
        np.testing.assert_allclose(pixel.psnr(sr, hr), ref_psnr, rtol=1e-12)
        np.testing.assert_allclose(pixel.ssim(sr, hr), ref_ssim, atol=1e-9)


def test_ssim_is_torchmetrics_full_map_over_the_valid_region(faces):
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    hr = np.stack([f[96:160, 96:160] for f in faces[:2]])  # 64 px crops: float64 stays quick
    sr = np.stack([bicubic_x8(f) for f in hr])
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).double()  # noqa: E731
    _, full = tm_ssim(to_t(sr), to_t(hr), data_range=255.0, return_full_image=True)
    expected = full[..., 5:-5, 5:-5].mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(pixel.ssim(sr, hr), expected, atol=1e-9)


def test_float_tensors_are_quantised_like_saved_images(faces):
    hr = np.stack(faces[:2])
    as_float = torch.from_numpy(hr).permute(0, 3, 1, 2).float() / 255.0
    noise = (torch.rand_like(as_float) - 0.5) * (0.9 / 255)  # less than half a grey level
    assert np.array_equal(pixel.to_uint8_images(as_float + noise), hr)
    assert np.array_equal(pixel.to_uint8_images(as_float * 2 - 0.5).max(), 255)
    np.testing.assert_array_equal(pixel.mse(as_float, hr), [0.0, 0.0])


def test_psnr_of_identical_images_is_capped():
    img = np.full((1, 16, 16, 3), 77, dtype=np.uint8)
    assert pixel.psnr(img, img)[0] == pixel.PSNR_CAP_DB == 100.0
    one_off = img.copy()
    one_off[0, 0, 0, 0] += 1
    assert pixel.psnr(one_off, img)[0] == pytest.approx(10 * np.log10(255**2 * 768))  # 82.9 dB
    with pytest.raises(ValueError, match="differ in shape"):
        pixel.mse(img, img[:, :8])


def test_device_psnr_ssim_equal_the_numpy_metrics(faces):
    """Training validates on CUDA with mfsr.metrics.device: same definitions, same numbers."""
    from mfsr.metrics.device import psnr_ssim

    hr = np.stack(faces[:3])
    to_float = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    target = to_float(hr)
    outputs = {
        "bicubic x8": to_float(np.stack([bicubic_x8(f) for f in hr])),
        "off-grid floats": target + (torch.rand_like(target) - 0.5) * 0.1,  # clamped, rounded
        "identical": target,
    }
    for name, sr in outputs.items():
        p, s = psnr_ssim(sr, target)
        assert p.dtype == s.dtype == torch.float64, name
        np.testing.assert_allclose(p.numpy(), pixel.psnr(sr, target), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(s.numpy(), pixel.ssim(sr, target), atol=1e-12, err_msg=name)
    assert psnr_ssim(target, target)[0].tolist() == [pixel.PSNR_CAP_DB] * 3
    as_uint8 = torch.from_numpy(hr).permute(0, 3, 1, 2)
    np.testing.assert_allclose(psnr_ssim(as_uint8, target)[1].numpy(), 1.0, atol=1e-12)
    broken = target.clone()
    broken[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN/inf"):
        psnr_ssim(broken, target)
    with pytest.raises(ValueError, match="differ"):
        psnr_ssim(target, target[..., :128])


# --- CPBD against the reference package ----------------------------------------------------------


def test_grey_conversion_is_pillows(faces):
    for face in faces[:2]:
        expected = np.asarray(Image.fromarray(face).convert("L"))
        assert np.array_equal(sharpness.rgb_to_gray(face), expected)


def test_cpbd_agrees_with_the_reference_implementation(faces):
    reference = pytest.importorskip("cpbd")  # cpbd-py312: a test-only oracle
    worst = 0.0
    for face in faces:
        for variant in (face, blurred(face), bicubic_x8(face), unsharp(face)):
            grey = sharpness.rgb_to_gray(variant)
            ours = sharpness.cpbd(variant)
            worst = max(worst, abs(ours - reference.compute(grey)))
    assert worst < 1e-3  # measured: < 1e-15 (the same edges and widths, exactly)


def test_cpbd_edge_cases():
    reference = pytest.importorskip("cpbd")
    flat = np.full((128, 128), 90, dtype=np.uint8)
    assert sharpness.cpbd(flat) == reference.compute(flat) == 0.0
    bars = np.zeros((128, 128), dtype=np.uint8)
    bars[:, 40:80] = 200  # only vertical edges, gx >= 0 and gy = 0 almost everywhere
    assert sharpness.cpbd(bars) == pytest.approx(reference.compute(bars), abs=1e-12)
    assert np.isnan(sharpness.cpbd(np.zeros((40, 300), dtype=np.uint8)))  # no whole block
    grey = np.random.default_rng(1).integers(0, 256, (128, 192)).astype(np.float64) / 3
    assert sharpness.cpbd(grey) == pytest.approx(reference.compute(grey), abs=1e-12)


def test_sharpness_difference_sign(faces):
    hr = np.stack(faces)
    blurry = sharpness.sharpness_difference(np.stack([blurred(f) for f in hr]), hr)
    sharper = sharpness.sharpness_difference(np.stack([unsharp(f) for f in hr]), hr)
    same = sharpness.sharpness_difference(hr, hr)
    assert (blurry > 0.05).all(), blurry  # output blurrier than the truth: positive
    assert (sharper < -0.02).all(), sharper  # over-sharpened output: negative
    assert (same == 0).all()


# --- FFR -----------------------------------------------------------------------------------------


def test_ffr_on_real_faces(faces):
    hr = faces[:3]
    analyses = [ffr.analyze_face(f) for f in hr]
    assert all(a.found and a.descriptor.shape == (128,) for a in analyses)
    assert all(ffr.descriptor_distance(a, ffr.analyze_face(f)) < 1e-9 for a, f in zip(analyses, hr))
    others = [ffr.descriptor_distance(analyses[0], a) for a in analyses[1:]]
    assert min(others) > 0.6  # different people
    grey = np.full((256, 256, 3), 128, dtype=np.uint8)
    nothing = ffr.analyze_face(grey)
    assert not nothing.found and nothing.n_faces == 0
    assert np.isnan(ffr.descriptor_distance(nothing, analyses[0]))

    d = np.array([0.0, 0.0, np.nan])
    summary = ffr.ffr_summary(d, sr_found=[True, True, False], hr_found=[True, True, True])
    assert summary["no_face"]["count"] == 1 and summary["identity"]["count"] == 1
    assert summary["identity"]["far"] == 0 and summary["distance"]["mean"] == 0.0


def test_verification_curve_and_counts():
    d = np.array([0.1, 0.5, 0.7, np.nan, 0.3])
    sr = np.array([True, True, True, False, True])
    hr = np.array([True, True, True, True, False])  # last sample cannot be judged
    t, rates = ffr.verification_curve(d, sr, hr)
    assert t[0] == 0 and t[-1] == pytest.approx(1.2) and (np.diff(rates) <= 0).all()
    assert rates[0] == 1.0 and rates[-1] == 0.25  # only the no-face output fails at 1.2
    assert rates[np.searchsorted(t, 0.6)] == 0.5
    s = ffr.ffr_summary(d, sr, hr)
    assert s["identity"] == {
        "threshold": 0.6,
        "n_judged": 4,
        "count": 2,
        "rate": 0.5,
        "far": 1,
        "far_of": 3,
    }
    assert s["no_face"] == {"count": 1, "rate": 0.2, "hr_no_face": 1}


def test_hr_descriptors_are_cached(faces, tmp_path, monkeypatch):
    calls = []
    real = ffr.analyze_face

    def counting(image, *args, **kwargs):
        calls.append(image.tobytes()[:64])
        return real(image, *args, **kwargs)

    monkeypatch.setattr(ffr, "analyze_face", counting)
    hr = np.stack(faces[:2])
    sr = np.stack([bicubic_x8(f) for f in hr])
    cache = DescriptorCache(tmp_path / "cache")
    first = table.per_image_table(sr, hr, ["a", "b"], cache=cache)
    assert len(calls) == 4 and cache.misses == 2 and cache.hits == 0
    assert len(list((tmp_path / "cache" / "descriptors").glob("*.npz"))) == 2
    calls.clear()
    again = table.per_image_table(sr, hr, ["a", "b"], cache=DescriptorCache(tmp_path / "cache"))
    assert len(calls) == 2  # only the two outputs were analysed
    assert texts(again) == texts(first)
    # a corrupt entry is recomputed, never trusted
    next((tmp_path / "cache" / "descriptors").glob("*.npz")).write_bytes(b"garbage")
    calls.clear()
    table.per_image_table(sr, hr, ["a", "b"], cache=DescriptorCache(tmp_path / "cache"))
    assert len(calls) == 3


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("MFSR_CACHE", str(tmp_path / "c"))
    assert DescriptorCache().root == tmp_path / "c"
    monkeypatch.delenv("MFSR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert ffr.default_cache_dir() == tmp_path / "x" / "mfsr"
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    assert ffr.cache_key(img) != ffr.cache_key(img, min_score=0.3)  # settings are in the key
    none = FaceAnalysis(0, float("nan"), None, None)
    cache = DescriptorCache(tmp_path / "c")
    cache.put("k", none)
    got = cache.get("k")
    assert got is not None and not got.found and got.n_faces == 0 and got.box is None


# --- LPIPS, bootstrap, table ---------------------------------------------------------------------


@random_trunk_ok
def test_lpips_metric_follows_the_weights_policy(tmp_path, monkeypatch):
    from mfsr.metrics.perceptual import LPIPSMetric

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with pytest.raises(MfsrError, match="mfsr weights fetch alexnet"):
        LPIPSMetric()
    metric = LPIPSMetric(random_trunk=True)
    assert metric.random and metric.trunk_info()["random"] is True
    a = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    b = a[::-1].copy()
    values = metric(a, b)
    assert values.shape == (2,) and (values > 0).all()
    assert np.array_equal(metric(a, a), [0.0, 0.0])
    as_tensor = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(metric(as_tensor, b), values, rtol=1e-6)


def test_bootstrap_interval():
    values = np.random.default_rng(3).normal(10, 2, 300)
    low, high = stats.bootstrap_ci(values)
    assert low < values.mean() < high and high - low < 1.0
    assert stats.bootstrap_ci(values) == (low, high)  # seeded: reproducible
    assert stats.bootstrap_ci(values, seed=1) != (low, high)
    assert stats.bootstrap_ci(np.array([4.0])) == (4.0, 4.0)
    assert all(np.isnan(stats.bootstrap_ci(np.array([]))))
    block = stats.mean_ci(np.array([1.0, np.nan, 3.0]))
    assert block["n"] == 2 and block["n_nan"] == 1 and block["mean"] == 2.0


def test_table_rows_and_csv_round_trip(faces, tmp_path):
    hr = np.stack([f[:128, :128] for f in faces[:2]])
    rows = table.per_image_table(hr, hr, ["x", "y"], faces=table.FaceSettings(enabled=False))
    assert [r["id"] for r in rows] == ["x", "y"] and list(rows[0]) == list(table.COLUMNS)
    assert rows[0]["psnr"] == 100.0 and rows[0]["ssim"] == pytest.approx(1.0)
    assert rows[0]["sharpness_diff"] == 0.0 and rows[0]["lpips"] is None
    table.write_csv(rows, tmp_path / "t.csv")
    back = table.read_csv(tmp_path / "t.csv")
    assert back[1]["mse"] == 0.0 and back[1]["sr_face"] is None and back[1]["id"] == "y"


def test_numpy_metrics_do_not_import_torch():
    code = (
        "import sys, mfsr.metrics.table, mfsr.metrics.stats; "
        "print([m for m in ('torch', 'torchvision', 'lpips') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
