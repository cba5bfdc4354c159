"""mfsr data build: determinism, identity-disjoint splits, resume, conflicts and bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mfsr.data.build import BuildOptions, SourceItem, assign_splits, build_dataset
from mfsr.data.dataset import SequenceDataset
from mfsr.data.degrade import load_degradation
from mfsr.errors import MfsrError


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def options(source: Path, out: Path, **kw) -> BuildOptions:
    base = dict(
        source=source,
        out=out,
        degradation=load_degradation("default"),
        scale=8,
        n_frames=7,
        hr_size=256,
        seed=3,
        counts=(6, 3, 3),
    )
    return BuildOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def built_x8(tmp_path_factory, lfw_subset) -> Path:
    out = tmp_path_factory.mktemp("x8") / "set"
    build_dataset(options(lfw_subset, out))
    return out


def test_build_is_byte_identical_for_same_seed(built_x8, lfw_subset, tmp_path):
    again = tmp_path / "again"
    build_dataset(options(lfw_subset, again, workers=2))
    first = tree_digest(built_x8)
    assert len([k for k in first if k.endswith("meta.json")]) == 12
    assert first == tree_digest(again)
    other = tmp_path / "other-seed"
    build_dataset(options(lfw_subset, other, seed=4))
    assert tree_digest(other) != first


def test_samples_have_the_seed_geometry(built_x8):
    ds = SequenceDataset(built_x8 / "test", n_frames=7)
    assert len(ds) == 3 and not ds.skipped
    item = ds[0]
    assert item["frames"].shape == (7, 3, 32, 32) and item["hr"].shape == (3, 256, 256)
    meta = item["meta"]
    assert meta["scale"] == 8 and meta["split"] == "test" and meta["reference_index"] == 3
    assert len(meta["degradation"]["drawn"]["frames"]) == 7
    assert meta["source"]["sha256"] and meta["identity"] in item["id"]


def test_splits_are_identity_disjoint(built_x8):
    splits = json.loads((built_x8 / "splits.json").read_text())
    identities = {s: {it["identity"] for it in splits[s]} for s in splits}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [6, 3, 3]
    assert not identities["train"] & identities["val"]
    assert not identities["train"] & identities["test"]
    assert not identities["val"] & identities["test"]
    on_disk = {
        s: {json.loads(m.read_text())["identity"] for m in (built_x8 / s).glob("*/meta.json")}
        for s in splits
    }
    assert on_disk == identities


def test_assign_splits_heavy_tailed_identities():
    rng = np.random.default_rng(0)
    sizes = np.minimum(rng.zipf(2.0, size=800), 300)  # LFW-like: most identities have 1 photo
    items = [
        SourceItem(f"{i}_{k}", f"{i}/{k}.jpg", str(i), "0")
        for i, n in enumerate(sizes)
        for k in range(n)
    ]
    opts = BuildOptions(source=Path("."), out=Path("."), seed=1)
    splits = assign_splits(items, opts)
    total = sum(len(v) for v in splits.values())
    assert total == len(items)
    for name, weight in zip(("train", "val", "test"), (2504, 837, 753)):
        assert abs(len(splits[name]) / total - weight / 4094) < 0.02
    owners = {}
    for name, members in splits.items():
        for it in members:
            assert owners.setdefault(it.identity, name) == name
    exact = assign_splits(
        items, BuildOptions(source=Path("."), out=Path("."), counts=(300, 100, 90))
    )
    assert [len(exact[s]) for s in ("train", "val", "test")] == [300, 100, 90]
    assert assign_splits(items, opts) == splits


def test_resume_rewrites_only_missing_samples(built_x8, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built_x8, copy)
    victim = next((copy / "val").iterdir())
    shutil.rmtree(victim)
    (copy / "val" / ".tmp-half-written-123").mkdir()
    (copy / "val" / ".tmp-half-written-123" / "lr_00.png").write_bytes(b"partial")
    source = Path(json.loads((copy / "dataset.json").read_text())["source"])
    report = build_dataset(options(source, copy))
    assert sum(report.written.values()) == 1 and sum(report.kept.values()) == 11
    assert not (copy / "val" / ".tmp-half-written-123").exists()
    expected = tree_digest(built_x8)
    got = tree_digest(copy)
    assert {k: v for k, v in got.items() if k != "build-report.json"} == {
        k: v for k, v in expected.items() if k != "build-report.json"
    }


def test_conflicting_settings_and_foreign_folders(built_x8, lfw_subset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built_x8, copy)
    with pytest.raises(MfsrError, match=r"other settings.*scale"):
        build_dataset(options(lfw_subset, copy, scale=4))
    report = build_dataset(options(lfw_subset, copy, scale=4, hr_size=128, overwrite=True))
    assert sum(report.written.values()) == 12
    assert SequenceDataset(copy / "train")[0]["frames"].shape == (7, 3, 32, 32)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(MfsrError, match="not empty"):
        build_dataset(options(lfw_subset, foreign))
    assert (foreign / "keep.txt").read_text() == "mine"


def test_changed_source_is_detected(lfw_subset, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(lfw_subset, source)
    out = tmp_path / "out"
    build_dataset(options(source, out))
    shutil.rmtree(sorted(source.iterdir())[0])
    with pytest.raises(MfsrError, match="source photos changed"):
        build_dataset(options(source, out))


def _bad_source(tmp_path: Path, lfw_subset: Path) -> Path:
    src = tmp_path / "faces"
    good = sorted(lfw_subset.glob("*/*.jpg"))[:6]
    for i, photo in enumerate(good):
        (src / f"person{i}").mkdir(parents=True)
        shutil.copy(photo, src / f"person{i}" / "a.jpg")
    face = Image.open(good[0])
    bad = src / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes(good[0].read_bytes()[:2000])
    (bad / "garbage.png").write_bytes(b"\x89PNG not really")
    (bad / "notes.txt").write_text("not an image")
    face.resize((40, 40)).save(bad / "tiny.png")
    # Odd modes are usable: they are converted to RGB.
    (src / "modes").mkdir()
    face.convert("L").save(src / "modes" / "grey.png")
    face.convert("P").save(src / "modes" / "palette.png")
    face.convert("RGBA").save(src / "modes" / "alpha.png")
    face.convert("CMYK").save(src / "modes" / "cmyk.jpg")
    (src / "linked").mkdir()
    (src / "linked" / "outside.jpg").symlink_to(good[1].resolve())
    return src


def test_bad_inputs_are_counted_skips(lfw_subset, tmp_path):
    src = _bad_source(tmp_path, lfw_subset)
    report = build_dataset(options(src, tmp_path / "out", counts=None, hr_size=128))
    reasons = {Path(w).name: r for w, r in report.skipped}
    assert set(reasons) == {
        "zero.jpg",
        "truncated.jpg",
        "garbage.png",
        "notes.txt",
        "tiny.png",
        "outside.jpg",
    }
    assert "empty file" in reasons["zero.jpg"] and "truncated" in reasons["truncated.jpg"]
    assert "not an image file" in reasons["notes.txt"] and "too small" in reasons["tiny.png"]
    assert "outside the source folder" in reasons["outside.jpg"]
    assert report.total == 10  # 6 people + 4 odd-mode photos
    saved = json.loads((tmp_path / "out" / "build-report.json").read_text())
    assert len(saved["skipped"]) == 6


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mfsr", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_fails_cleanly_when_nothing_usable(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("data", "build", "--source", str(empty), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{empty}: the source folder is empty" in result.stderr
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"")
    (junk / "b.jpg").write_bytes(b"junk")
    result = run_cli("data", "build", "--source", str(junk), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no usable face photos (2 skipped)" in result.stderr
    assert not (tmp_path / "o").exists()
    result = run_cli("data", "build", "--source", str(tmp_path / "missing"), "--out", "x")
    assert result.returncode == 2 and "source folder not found" in result.stderr


def test_cli_builds_and_reports(lfw_subset, tmp_path):
    out = tmp_path / "cli set"
    result = run_cli(
        "data",
        "build",
        "--source",
        str(lfw_subset),
        "--out",
        str(out),
        "--scale",
        "4",
        "--hr-size",
        "64",
        "--frames",
        "3",
        "--counts",
        "4,2,2",
    )
    assert result.returncode == 0, result.stderr
    assert "done: 8 samples" in result.stderr
    assert len(list(out.glob("*/*/lr_*.png"))) == 24
    bad = run_cli(
        "data", "build", "--source", str(lfw_subset), "--out", str(out), "--counts", "4,2"
    )
    assert bad.returncode == 2 and "--counts: expected three integers" in bad.stderr
    bad = run_cli(
        "data", "build", "--source", str(lfw_subset), "--out", str(out), "--degradation", "nosuch"
    )
    assert bad.returncode == 2 and "unknown degradation preset 'nosuch'" in bad.stderr


def test_a_split_too_small_to_exist_gets_a_note(lfw_subset, tmp_path):
    """One identity cannot give val and test a whole identity: each gets a note (they were
    left out without a word)."""
    person = next(p for p in sorted(lfw_subset.iterdir()) if len(list(p.iterdir())) >= 2)
    source = tmp_path / "one-person"
    shutil.copytree(person, source / person.name)
    kw = {"counts": None, "hr_size": 64, "scale": 4, "n_frames": 3}
    report = build_dataset(options(source, tmp_path / "set", **kw))
    notes = [n for n in report.notes if "no samples" in n]
    assert [n.split(":")[0] for n in notes] == ["val", "test"], report.notes
    assert "1 identity" in notes[0] and report.written["train"] >= 2
