"""Determinism of the degradation model, the on-the-fly dataset, and preset checking.

(The measurements of motion, blur, noise and JPEG are in test_degrade.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from degrade_helpers import FACES, face
from mfsr.data.degrade import (
    Crop,
    DegradationConfig,
    load_degradation,
    render_view,
    sample_params,
    synthesize_sequence,
)
from mfsr.data.images import read_rgb
from mfsr.errors import MfsrError

# --------------------------------------------------------------------------------------------
# Determinism and the on-the-fly dataset
# --------------------------------------------------------------------------------------------


def test_synthesis_is_deterministic_per_seed(lfw_root):
    image = face(lfw_root)
    crop = Crop.centred(250, 250)
    cfg = load_degradation("default")

    def run(seed: int):
        return synthesize_sequence(image, crop, 256, 8, 7, cfg, np.random.default_rng(seed))

    (f1, h1, p1), (f2, h2, p2), (f3, h3, p3) = run(1), run(1), run(2)
    assert p1 == p2 and h1.tobytes() == h2.tobytes()
    assert [f.tobytes() for f in f1] == [f.tobytes() for f in f2]
    assert p3 != p1
    assert np.array_equal(h3, h1)  # the reference view is never moved or degraded
    assert all(not np.array_equal(a, b) for a, b in zip(f1, f3))
    assert all(f.shape == (32, 32, 3) and f.dtype == np.uint8 for f in f1)
    assert h1.shape == (256, 256, 3) and h1.dtype == np.uint8


@pytest.fixture(scope="module")
def synthetic_ds(lfw_root):
    from mfsr.data.dataset import SourceImage, SyntheticSequenceDataset

    paths = [lfw_root / n for n in [*FACES, "Aaron_Tippin/Aaron_Tippin_0001.jpg"]]
    if not all(p.exists() for p in paths):
        pytest.skip(f"LFW photos {FACES} not found under {lfw_root}")
    sources = [SourceImage(p, p.parent.name, p.stem) for p in paths]

    def make(seed: int = 0):
        return SyntheticSequenceDataset(sources, 8, 7, 256, load_degradation("default"), seed)

    return make


def items_equal(a: dict, b: dict) -> bool:
    return (
        a["id"] == b["id"]
        and a["meta"] == b["meta"]
        and bool((a["frames"] == b["frames"]).all())
        and bool((a["hr"] == b["hr"]).all())
    )


def test_dataset_items_shapes_and_hr(synthetic_ds):
    import torch

    from mfsr.data.dataset import to_tensor

    ds = synthetic_ds()
    item = ds[0]
    assert item["frames"].shape == (7, 3, 32, 32) and item["hr"].shape == (3, 256, 256)
    for key in ("frames", "hr"):
        t = item[key]
        assert t.dtype == torch.float32 and float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    # HR is the unmoved, undegraded reference view of the centred crop.
    image = read_rgb(ds.sources[0].path)
    hr = render_view(image, Crop.centred(image.shape[1], image.shape[0]), 256, 8)
    assert torch.equal(item["hr"], to_tensor(hr))
    ref = item["meta"]["degradation"]["reference_index"]
    assert ref == 3 and item["meta"]["degradation"]["frames"][ref]["shift"] == [0.0, 0.0]


def test_dataset_is_order_independent_and_changes_per_epoch(synthetic_ds):
    ds = synthetic_ds()
    forward = [ds[i] for i in range(len(ds))]
    backward = [ds[i] for i in reversed(range(len(ds)))][::-1]
    assert all(items_equal(a, b) for a, b in zip(forward, backward))
    ds.set_epoch(1)
    epoch1 = [ds[i] for i in range(len(ds))]
    assert all(e["meta"]["key"][0] == 1 for e in epoch1)
    assert all(not bool((a["frames"] == b["frames"]).all()) for a, b in zip(forward, epoch1))
    # HR does not depend on the epoch (no motion on the reference frame).
    assert all(bool((a["hr"] == b["hr"]).all()) for a, b in zip(forward, epoch1))
    ds.set_epoch(0)
    assert items_equal(ds[1], forward[1])
    other_seed = synthetic_ds(seed=1)
    assert not bool((other_seed[0]["frames"] == forward[0]["frames"]).all())


def test_dataset_same_items_with_loader_workers(synthetic_ds):
    from torch.utils.data import DataLoader

    from mfsr.data.dataset import collate

    ds = synthetic_ds()
    batches = {
        workers: list(DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate))
        for workers in (0, 2)
    }
    for b0, b2 in zip(batches[0], batches[2]):
        assert b0["id"] == b2["id"] and b0["meta"] == b2["meta"]
        assert bool((b0["frames"] == b2["frames"]).all()) and bool((b0["hr"] == b2["hr"]).all())
    assert batches[0][0]["frames"].shape == (2, 7, 3, 32, 32)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "mild", "severe", "clean"])
def test_presets_load(name):
    cfg = load_degradation(name)
    assert isinstance(cfg, DegradationConfig) and cfg.name == name
    params = sample_params(cfg, 7, np.random.default_rng(0))
    assert len(params.frames) == 7


@pytest.mark.parametrize(
    "text,field",
    [
        ("blurr: {sigma: [0.1, 0.2]}\n", "blurr"),
        ("blur: {sigmaa: [0.1, 0.2]}\n", "blur.sigmaa"),
        ('motion: {max_shift: "a"}\n', "motion.max_shift"),
        ("motion: {max_shift: true}\n", "motion.max_shift"),
        ("blur: {sigma: [0.1]}\n", "blur.sigma"),
        ("motion: {max_shift: -1}\n", "motion.max_shift"),
        ("motion: {max_rotation: .nan}\n", "motion.max_rotation"),
        ("noise: {gaussian_sigma: [-1, 2]}\n", "noise.gaussian_sigma"),
        ("noise: {poisson_peak: [-5, 500]}\n", "noise.poisson_peak"),
        ("noise: {poisson_peak: [.nan, 500]}\n", "noise.poisson_peak"),
        ("noise: {poisson_peak: [.inf, .inf]}\n", "noise.poisson_peak"),
        ("jpeg: {quality: [0, 60]}\n", "jpeg.quality"),
        ("blur: {sigma: [0.6, 0.3]}\n", "blur.sigma"),
        ("blur: {motion_length: [1.0, 0.5]}\n", "blur.motion_length"),
        ("noise: {poisson_peak: [5000, 500]}\n", "noise.poisson_peak"),
        ("jpeg: {quality: [95, 60]}\n", "jpeg.quality"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MfsrError) as err:
        load_degradation(str(path))
    message = str(err.value)
    assert str(path) in message and field in message
    assert "\n" not in message


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("blurr: {sigma: [0.1, 0.2]}\n", encoding="utf-8")
    with pytest.raises(MfsrError, match="did you mean 'blur'"):
        load_degradation(str(path))


def test_good_custom_config_loads(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nmotion: {max_shift: 0.5}\nnoise: {poisson_peak: null}\n"
        "jpeg: {quality: [70, 70]}\n",
        encoding="utf-8",
    )
    cfg = load_degradation(str(path))
    assert cfg.name == "mine" and cfg.motion.max_shift == 0.5
    assert cfg.noise.poisson_peak is None and cfg.jpeg.quality == (70, 70)
    assert cfg.blur == DegradationConfig().blur  # unspecified sections keep their defaults


def test_stream_keys_give_distinct_draws_of_one_photo(lfw_root):
    import torch

    from mfsr.data.dataset import SourceImage, SyntheticSequenceDataset

    photos = sorted(lfw_root.glob("*/*.jpg"))[:1]
    ds = SyntheticSequenceDataset(
        [SourceImage(photos[0], "x", "x")], 4, 3, 64, load_degradation("default"), seed=5
    )
    a, b, a2 = ds.sample(0, (0, 0)), ds.sample(0, (0, 1)), ds.sample(0, (0, 0))
    assert not torch.equal(a["frames"], b["frames"]) and torch.equal(a["frames"], a2["frames"])
    assert torch.equal(ds[-1]["frames"], ds[0]["frames"])


def test_several_presets_are_mixed_per_sample(lfw_root):
    from mfsr.data.dataset import SourceImage, SyntheticSequenceDataset

    photos = sorted(lfw_root.glob("*/*.jpg"))[:1]
    presets = [load_degradation("clean"), load_degradation("severe")]
    ds = SyntheticSequenceDataset([SourceImage(photos[0], "x", "x")], 4, 3, 64, presets, seed=0)
    names = [ds.sample(0, (0, pos))["meta"]["preset"] for pos in range(40)]
    assert set(names) == {"clean", "severe"} and 10 <= names.count("clean") <= 30
    assert names == [ds.sample(0, (0, pos))["meta"]["preset"] for pos in range(40)]
