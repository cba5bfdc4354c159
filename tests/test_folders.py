"""Reading sequence folders: the native layout, MLFDB-style layouts and their failure modes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mfsr.data.dataset import SequenceDataset, collate
from mfsr.data.folders import FolderLayout, find_samples
from mfsr.data.images import write_png
from mfsr.data.sample import write_sample
from mfsr.errors import DataError

MLFDB = FolderLayout(lr="LR/x4/{id}/frame_*.png", hr="HR/{id}.png", meta=None)


def _img(value: int, size: int) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def _mlfdb_sample(root, sample_id, n=10, lr=8, hr=32, with_hr=True):
    folder = root / "LR" / "x4" / sample_id
    folder.mkdir(parents=True)
    for i in range(1, n + 1):  # 1-based, unpadded: frame_2 must come before frame_10
        write_png(folder / f"frame_{i}.png", _img(i * 10, lr))
    if with_hr:
        (root / "HR").mkdir(exist_ok=True)
        write_png(root / "HR" / f"{sample_id}.png", _img(255, hr))


def test_mlfdb_style_layout_natural_order_and_skips(tmp_path):
    _mlfdb_sample(tmp_path, "seq a")
    _mlfdb_sample(tmp_path, "seq_b")
    _mlfdb_sample(tmp_path, "no_hr", with_hr=False)
    _mlfdb_sample(tmp_path, "short", n=3)
    samples, skipped = find_samples(tmp_path, MLFDB, n_frames=10)
    assert [s.id for s in samples] == ["seq a", "seq_b"]
    assert [p.name for p in samples[0].lr][:3] == ["frame_1.png", "frame_2.png", "frame_3.png"]
    assert samples[0].lr[-1].name == "frame_10.png"
    reasons = dict((os.path.basename(w), r) for w, r in skipped)
    assert reasons == {"no_hr": "no HR target", "short": "has 3 LR frames, expected 10"}
    ds = SequenceDataset(tmp_path, MLFDB, n_frames=10)
    item = ds[0]
    assert item["frames"].shape == (10, 3, 8, 8) and item["hr"].shape == (3, 32, 32)
    assert torch.allclose(item["frames"][1], torch.full((3, 8, 8), 20 / 255))
    assert item["meta"] == {}
    lr_only, _ = find_samples(tmp_path, MLFDB, require_hr=False)
    assert {s.id for s in lr_only} == {"seq a", "seq_b", "no_hr", "short"}


def test_frames_of_different_sizes_and_bad_hr_ratio(tmp_path):
    _mlfdb_sample(tmp_path, "odd", n=3)
    write_png(tmp_path / "LR" / "x4" / "odd" / "frame_2.png", _img(0, 9))
    ds = SequenceDataset(tmp_path, MLFDB)
    with pytest.raises(DataError, match=r"odd: LR frames differ in size.*frame_2.png: 9x9"):
        ds[0]
    _mlfdb_sample(tmp_path / "r", "ratio", n=3, lr=8, hr=20)
    with pytest.raises(DataError, match="not an integer multiple"):
        SequenceDataset(tmp_path / "r", MLFDB)[0]


def test_links_out_of_the_root_are_skipped(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_png(outside / "x.png", _img(1, 8))
    root = tmp_path / "root"
    _mlfdb_sample(root, "ok", n=2)
    _mlfdb_sample(root, "evil", n=2)
    (root / "LR" / "x4" / "evil" / "frame_2.png").unlink()
    (root / "LR" / "x4" / "evil" / "frame_2.png").symlink_to(outside / "x.png")
    samples, skipped = find_samples(root, MLFDB)
    assert [s.id for s in samples] == ["ok"]
    assert skipped[0][1] == "points outside the dataset folder"


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        SequenceDataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no usable samples"):
        SequenceDataset(tmp_path)
    with pytest.raises(DataError, match="exactly once"):
        FolderLayout(lr="LR/*.png")


def test_native_layout_roundtrip_and_loader(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(5)]
    hr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_sample(tmp_path, "s1", frames, hr, {"split": "test"})
    write_sample(tmp_path, "s2", frames, None, {"split": "test"})
    (tmp_path / ".tmp-s3-99").mkdir()  # an interrupted write is invisible
    ds = SequenceDataset(tmp_path, require_hr=False)
    assert [s.id for s in ds.samples] == ["s1", "s2"]
    item = ds[0]
    assert item["meta"]["n_frames"] == 5 and item["meta"]["has_hr"]
    assert torch.equal(
        (item["frames"][2] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(frames[2])
    )
    assert "hr" not in ds[1] and ds[1]["meta"]["has_hr"] is False
    batch = next(iter(DataLoader(SequenceDataset(tmp_path), batch_size=2, collate_fn=collate)))
    assert batch["frames"].shape == (1, 5, 3, 8, 8) and batch["id"] == ["s1"]
    with pytest.raises(DataError, match="differ in size"):
        write_sample(tmp_path, "s4", [frames[0], hr], None, {})
    assert not (tmp_path / "s4").exists()
