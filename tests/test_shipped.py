"""The model shipped in the package: checked, used by ``mfsr enhance`` by default, listed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from helpers import LFW, assert_one_line_error, require, run, tiny_checkpoint
from mfsr.data.images import read_rgb, write_png
from mfsr.errors import MfsrError
from mfsr.shipped import DEFAULT, SHIPPED, shipped_path


def test_the_shipped_model_is_there_and_intact():
    path = shipped_path()
    assert path.name == SHIPPED[DEFAULT].file
    assert path.stat().st_size < 10 * 2**20  # the package stays small (issue: at most ~10 MB)


def test_a_damaged_shipped_model_is_refused(tmp_path, monkeypatch):
    import mfsr.shipped

    damaged = tmp_path / SHIPPED[DEFAULT].file
    shutil.copy(shipped_path(), damaged)
    with damaged.open("r+b") as handle:
        handle.seek(-8, 2)
        handle.write(b"\0" * 8)
    monkeypatch.setattr(mfsr.shipped, "FOLDER", tmp_path)
    with pytest.raises(MfsrError, match="sha256 differs"):
        shipped_path()
    damaged.unlink()
    with pytest.raises(MfsrError, match="missing"):
        shipped_path()
    with pytest.raises(MfsrError, match="no shipped model 'x'"):
        shipped_path("x")


def test_enhance_without_a_model_uses_the_shipped_one(tmp_path, capsys):
    photo = read_rgb(require(LFW / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"))
    frames = []
    for k in range(7):  # a real face, 32 px, moved by a quarter LR pixel per frame
        frames.append(tmp_path / f"frame_{k}.png")
        write_png(frames[-1], np.ascontiguousarray(photo[60 + k : 60 + k + 128 : 4, 60:188:4]))
    out = tmp_path / "out"
    code, output = run(capsys, "enhance", "--frames", *frames, "--out", out)
    assert code == 0, output
    assert output.splitlines()[0].startswith(f"model: the shipped default, {DEFAULT}")
    doc = json.loads((out / "enhance.json").read_text())
    assert doc["model"]["file"] == str(shipped_path())
    (trunk,) = doc["model"]["trunks"]  # its identity loss's trunk, not a path where it was made
    assert trunk["name"] == "dlib_face_resnet_v1" and len(trunk["sha256"]) == 64
    assert "path" not in trunk
    (window,) = doc["windows"]
    assert read_rgb(out / window["face"]).shape == (128, 128, 3)


def test_models_list_shows_shipped_and_trained_models(tmp_path, capsys):
    from mfsr.weights import file_sha256

    runs = tmp_path / "runs"
    tiny_checkpoint(runs / "tiny" / "checkpoints" / "best.safetensors", 3)
    (runs / "empty").mkdir()
    code, output = run(capsys, "models", "list", "--runs", runs)
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith(f"{DEFAULT} (shipped, default): x4, 7 frames, registered fusion")
    assert lines[1].split()[:2] == ["sha256", file_sha256(shipped_path())]
    assert lines[2].startswith(f"skipped {runs / 'empty'}: ") and "without checkpoints" in lines[2]
    assert lines[3].startswith(f"{runs / 'tiny'}: x4, 3 frames, early fusion")


def test_models_list_without_runs_and_with_a_file_for_runs(tmp_path, capsys):
    code, output = run(capsys, "models", "list", "--runs", tmp_path / "nowhere")
    assert code == 0 and DEFAULT in output and "no trained runs" in output, output
    assert_one_line_error(*run(capsys, "models", "list", "--runs", shipped_path()), "not a folder")
