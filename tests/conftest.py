"""Shared fixtures: paths to the real data in ../shared/data, small real subsets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import LFW, refuse_download, require


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    return require(LFW)


@pytest.fixture(scope="session")
def lfw_subset(tmp_path_factory, lfw_root) -> Path:
    """A copy of 12 multi-photo and 12 single-photo LFW identities (48-ish real photos)."""
    out = tmp_path_factory.mktemp("lfw-subset")
    names = sorted(p.name for p in lfw_root.iterdir() if p.is_dir())[:400]
    multi = [n for n in names if len(list((lfw_root / n).iterdir())) >= 2][:12]
    single = [n for n in names if n not in multi][:12]
    for name in multi + single:
        photos = sorted((lfw_root / name).iterdir())[:4]
        (out / name).mkdir()
        for photo in photos:
            shutil.copy(photo, out / name / photo.name)
    return out


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, lfw_subset):
    """``tiny_dataset(hr_size, counts, splits)`` -> a dataset built from ``lfw_subset``: x4,
    3 frames, ``default`` degradation, the given HR size, split counts and frozen splits."""

    def build(hr_size: int, counts: tuple[int, int, int], splits: tuple[str, ...]) -> Path:
        from mfsr.data.build import BuildOptions, build_dataset
        from mfsr.data.degrade import load_degradation

        out = tmp_path_factory.mktemp("tiny-data") / "set"
        build_dataset(
            BuildOptions(
                source=lfw_subset,
                out=out,
                scale=4,
                n_frames=3,
                degradation=load_degradation("default"),
                hr_size=hr_size,
                counts=counts,
                write_splits=splits,
            )
        )
        return out

    return build


@pytest.fixture
def no_torch_hub_network(monkeypatch):
    """torch.hub downloads raise (used by the loss and weight tests, autouse there)."""
    import torch

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_download)
    monkeypatch.setattr(torch.hub, "urlopen", refuse_download)
