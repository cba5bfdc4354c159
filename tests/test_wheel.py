"""mfsr as a user installs it: a wheel, not this source tree, run from an empty folder.

The wheel is built from the repository and installed (without dependencies: they are this
environment's, and the machine is offline) into a folder of its own that comes first on
``PYTHONPATH``; the commands then run from an empty working folder, so neither the source tree
nor its ``configs``-style layout can be what they find. Presets and the shipped model must come
from the installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import LFW, require
from mfsr.data.images import read_rgb, write_png

REPO = Path(__file__).resolve().parents[1]
CACHES = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def _pip(*args: object) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The environment of a process that imports mfsr from an installed wheel."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a clean copy: the build must not write into the repository
    skip = {".git", ".venv", "data", "runs", "studies", "build", "dist", "bench", "exp"}
    shutil.copytree(REPO, source, ignore=lambda folder, names: [
        n for n in names
        if (Path(folder) == REPO and n in skip) or n.endswith(".egg-info") or n in CACHES
    ])  # fmt: skip
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", work / "dist", source)
    (wheel,) = (work / "dist").glob("mfsr-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", work / "site", wheel)
    return {**os.environ, "PYTHONPATH": str(work / "site")}


def _mfsr(env: dict[str, str], cwd: Path, *args: object) -> str:
    done = subprocess.run([sys.executable, "-m", "mfsr", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A small photo folder made by the test: 40 LFW identities, up to 2 photos each."""
    out = tmp_path_factory.mktemp("photos")
    for person in sorted(p for p in require(LFW).iterdir() if p.is_dir())[:40]:
        (out / person.name).mkdir()
        for photo in sorted(person.iterdir())[:2]:
            shutil.copy(photo, out / person.name / photo.name)
    return out


def test_the_installed_package_is_not_the_source_tree(installed, tmp_path):
    done = subprocess.run([sys.executable, "-c", "import mfsr; print(mfsr.__file__)"],
                          cwd=tmp_path, env=installed, capture_output=True, text=True)  # fmt: skip
    where = Path(done.stdout.strip())
    assert where.is_relative_to(Path(installed["PYTHONPATH"])), where
    assert (where.parent / "presets" / "train" / "quick.yaml").is_file()
    assert (where.parent / "shipped" / "quick-identity-x4.safetensors").is_file()
    for page in ("index.html", "app.js", "style.css"):  # mfsr serve's page
        assert (where.parent / "serve" / "static" / page).is_file()


def test_train_and_study_from_an_empty_folder(installed, photos, tmp_path):
    source = f"data.build.source={photos}"
    out = _mfsr(installed, tmp_path, "train", "--config", "smoke", "--set", source)
    assert "done:" in out and (tmp_path / "runs" / "smoke" / "checkpoints").is_dir()
    overrides = (f'[data.dataset=data/study-set, "data.build.counts=[24, 8, 8]", '
                 f'"data.build.splits=[val, test]", epochs=1, steps_per_epoch=2, batch_size=2, '
                 f"{source}]")  # fmt: skip
    settings = [f"train.overrides={overrides}", "losses=[mse]", "seeds=[0]", "evaluate.ffr=false",
                "evaluate.lpips=false", "baselines.single_frame=false"]  # fmt: skip
    args = [a for setting in settings for a in ("--set", setting)]
    _mfsr(installed, tmp_path, "study", "--config", "smoke", *args)
    table = json.loads((tmp_path / "studies" / "smoke" / "table1.json").read_text())
    assert {m["key"] for m in table["methods"]} >= {"mse", "bicubic"}


def test_enhance_with_the_shipped_model_from_an_empty_folder(installed, tmp_path):
    photo = read_rgb(require(LFW / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"))
    frames = []
    for k in range(7):
        frames.append(tmp_path / f"frame_{k}.png")
        write_png(frames[-1], np.ascontiguousarray(photo[60 + k : 60 + k + 128 : 4, 60:188:4]))
    out = _mfsr(installed, tmp_path, "enhance", "--frames", *frames, "--out", "faces")
    assert out.splitlines()[0].startswith("model: the shipped default")
    doc = json.loads((tmp_path / "faces" / "enhance.json").read_text())
    assert Path(doc["model"]["file"]).is_relative_to(Path(installed["PYTHONPATH"]))
