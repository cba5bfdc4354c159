"""A hostile file system: full, read-only, a file where a folder should be; clashing names.

The full and read-only disks are real: a small tmpfs mounted for the test (root with
CAP_SYS_ADMIN, as on CI; skipped elsewhere with the reason). Every command must stop with one
line naming the path and saying what it kept, leave no half-written file behind, and complete
on a rerun once the disk is fixed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import LFW, VIDEOS, assert_one_line_error, model_tensors, overrides, require, run
from mfsr.data.images import read_rgb, write_png

PAGE = 4096  # tmpfs allocates whole pages


class Disk:
    """A small tmpfs at ``root``: :meth:`fill` it, :meth:`release` it, make it read-only."""

    def __init__(self, root: Path) -> None:
        self.root, self.filler = root, root / "filler"

    def fill(self, leave_pages: int = 0) -> None:
        """Write a filler file until the disk is full, then give back ``leave_pages`` pages."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            for step in (64 * PAGE, PAGE):  # big steps, then the last pages one by one
                try:
                    while True:
                        os.write(fd, b"\0" * step)
                except OSError:
                    pass
        finally:
            os.close(fd)
        size = self.filler.stat().st_size
        os.truncate(self.filler, max(0, size - size % PAGE - leave_pages * PAGE))

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, on: bool = True) -> None:
        _mount("-o", f"remount,{'ro' if on else 'rw'}", str(self.root))


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def disk(tmp_path):
    root = tmp_path / "disk"
    root.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(root))
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        pytest.skip(f"cannot mount a small tmpfs here ({str(detail).strip()}): these tests need "
                    "root with CAP_SYS_ADMIN (CI has it)")  # fmt: skip
    yield Disk(root)
    subprocess.run(["umount", "-l", str(root)], check=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "build-report.json"
    }


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name != "filler"]


def _build_args(source: Path, out: Path) -> list[object]:
    return ["data", "build", "--source", source, "--out", out, "--scale", "4", "--frames", "3",
            "--hr-size", "32", "--splits", "train,val,test", "--workers", "1"]  # fmt: skip


def test_data_build_on_a_full_disk_completes_on_rerun(lfw_subset, disk, tmp_path, capsys):
    reference = tmp_path / "reference"
    assert run(capsys, *_build_args(lfw_subset, reference))[0] == 0
    disk.fill(leave_pages=12)
    out = disk.root / "set"
    code, output = run(capsys, *_build_args(lfw_subset, out))
    line = assert_one_line_error(code, output, "No space left on device", str(out))
    assert "finished samples are kept" in line and "rerun the same command" in line
    assert not _hidden(out)  # no half-written sample folder, temporary file or lock
    disk.release()
    code, output = run(capsys, *_build_args(lfw_subset, out))
    assert code == 0, output
    assert _files(out) == _files(reference)  # byte for byte what an undisturbed build wrote


@pytest.fixture(scope="module")
def tiny_data(tiny_dataset):
    return tiny_dataset(32, (12, 4, 4), ("val", "test"))


def _evaluate_args(data: Path, out: Path, *extra: str) -> list[object]:
    return ["evaluate", "--data", data, "--baseline", "bicubic", "--out", out, "--no-ffr",
            "--no-lpips", *extra]  # fmt: skip


def test_evaluate_on_a_full_disk_then_refuses_a_finished_result(tiny_data, disk, tmp_path, capsys):
    reference = tmp_path / "reference"
    assert run(capsys, *_evaluate_args(tiny_data, reference))[0] == 0
    out = disk.root / "eval"
    disk.fill(leave_pages=3)  # the lock file, per_image.csv, table.md: summary.json fails
    code, output = run(capsys, *_evaluate_args(tiny_data, out))
    assert_one_line_error(code, output, "No space left on device", str(out), "no summary.json")
    assert not (out / "summary.json").exists() and not _hidden(out)
    disk.release()
    code, output = run(capsys, *_evaluate_args(tiny_data, out))  # taken over: not finished
    assert code == 0 and (out / "summary.json").is_file(), output
    same = (out / "per_image.csv").read_bytes() == (reference / "per_image.csv").read_bytes()
    assert same  # the scores of an undisturbed evaluation
    code, output = run(capsys, *_evaluate_args(tiny_data, out))
    assert_one_line_error(code, output, "already holds an evaluation", "--overwrite")
    code, output = run(capsys, *_evaluate_args(tiny_data, out, "--overwrite"))
    assert code == 0, output


def _face_frames(folder: Path) -> list[Path]:
    """7 shifted 32 px crops of a real LFW face."""
    photo = read_rgb(require(LFW / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"))
    folder.mkdir()
    paths = []
    for k in range(7):
        crop = photo[60 + k : 60 + k + 128 : 4, 60 : 60 + 128 : 4]
        paths.append(folder / f"frame_{k}.png")
        write_png(paths[-1], np.ascontiguousarray(crop))
    return paths


def test_enhance_on_a_full_disk_completes_on_rerun(disk, tmp_path, capsys):
    frames = _face_frames(tmp_path / "frames")
    out = disk.root / "faces"
    args = ["enhance", "--frames", *frames, "--baseline", "classical", "--out", out]
    reference = tmp_path / "reference"
    assert run(capsys, *args[:-1], reference)[0] == 0
    face = next(reference.glob("face_*.png")).stat().st_size
    disk.fill(leave_pages=2 + -(-face // PAGE))  # the lock file and the face fit, not the rest
    code, output = run(capsys, *args)
    assert_one_line_error(code, output, "No space left on device", str(out), "without enhance.json")
    assert not (out / "enhance.json").exists()
    kept = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert [n[:5] for n in kept] == ["face_"], list(kept)
    assert all(data == (reference / n).read_bytes() for n, data in kept.items())
    assert _hidden(out) == []  # no half-written image (a cut-off side-by-side once), no temp
    disk.release()
    code, output = run(capsys, *args)  # an unfinished folder is completed without --overwrite
    assert code == 0 and (out / "enhance.json").is_file(), output
    images = {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}
    assert images == {p.name: p.read_bytes() for p in sorted(reference.glob("*.png"))}
    assert_one_line_error(*run(capsys, *args), "already holds an enhance result", "--overwrite")


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    args = ["train", "--config", "smoke"]
    for item in overrides(data, out, "epochs=5", "log_every=1", *extra):
        args += ["--set", item]
    return args


def test_train_on_a_full_disk_resumes_bit_identical(tiny_data, disk, tmp_path, capsys):
    assert run(capsys, *_train_args(tiny_data, tmp_path / "ref"))[0] == 0
    runs = disk.root / "runs"
    first = runs / "smoke" / "checkpoints" / "last.safetensors"

    def fill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while not first.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        disk.fill()

    filler = threading.Thread(target=fill_after_first_checkpoint)
    filler.start()
    code, output = run(capsys, *_train_args(tiny_data, runs))
    filler.join()
    assert_one_line_error(code, output, "No space left on device", "is intact: add --resume")
    assert not _hidden(runs / "smoke" / "checkpoints")  # no half-written checkpoint
    disk.release()
    code, output = run(capsys, *_train_args(tiny_data, runs), "--resume")
    assert code == 0, output
    resumed, reference = model_tensors(runs / "smoke"), model_tensors(tmp_path / "ref" / "smoke")
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_read_only_output_folders_are_one_line(lfw_subset, tiny_data, disk, tmp_path, capsys):
    frames = _face_frames(tmp_path / "frames")
    (disk.root / "existing").mkdir()
    disk.read_only()
    try:
        for where in (disk.root / "new", disk.root / "existing"):
            for args in (
                _build_args(lfw_subset, where),
                _evaluate_args(tiny_data, where),
                ["enhance", "--frames", *frames, "--baseline", "bicubic", "--out", where],
                _train_args(tiny_data, where),
            ):
                assert_one_line_error(*run(capsys, *args), "Read-only file system", str(where))
    finally:
        disk.read_only(False)


@pytest.mark.parametrize("command", ["build", "evaluate", "enhance", "train"])
def test_an_output_under_a_file_is_one_line(command, lfw_subset, tiny_data, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "out"
    if command == "build":
        args = _build_args(lfw_subset, out)
    elif command == "evaluate":
        args = _evaluate_args(tiny_data, out)
    elif command == "enhance":
        frames = _face_frames(tmp_path / "frames")
        args = ["enhance", "--frames", *frames, "--baseline", "bicubic", "--out", out]
    else:
        args = _train_args(tiny_data, out)
    assert_one_line_error(*run(capsys, *args), str(tmp_path / "file"))


def test_a_dataset_inside_its_own_source_is_refused(lfw_subset, tmp_path, capsys):
    source = tmp_path / "photos"
    shutil.copytree(lfw_subset, source)
    out = source / "built"
    code, output = run(capsys, *_build_args(source, out))
    assert_one_line_error(code, output, "is inside --source")
    assert not out.exists()


def _clip_copies(tmp_path: Path) -> list[Path]:
    clip = require(VIDEOS / "Audio_Source_00086.mp4")
    copies = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        copies.append(tmp_path / folder / "interview.mp4")
        shutil.copy(clip, copies[-1])
    return copies


def _from_video_args(clips: list[Path], out: Path) -> list[object]:
    args: list[object] = ["data", "from-video", "--out", out, "--scale", "4", "--hr-size", "64",
                          "--max-frames", "14"]  # fmt: skip
    for clip in clips:
        args += ["--video", clip]
    return args


def test_clips_with_the_same_name_never_share_sample_ids(tmp_path, capsys):
    a, b = _clip_copies(tmp_path)
    out = tmp_path / "set"
    code, output = run(capsys, *_from_video_args([a, b], out))
    assert_one_line_error(code, output, "would collide", "interview_f")
    assert not out.exists()  # refused before any work
    assert run(capsys, *_from_video_args([a], out))[0] == 0
    before = _files(out)
    code, output = run(capsys, *_from_video_args([b], out))  # a later call, another clip
    assert_one_line_error(code, output, "taken", str(a))
    assert _files(out) == before  # the first clip's sequences are intact
    assert run(capsys, *_from_video_args([a], out))[0] == 0  # the same clip again: rewritten
    other = [x if x != "64" else "32" for x in _from_video_args([a], out)]  # --hr-size 32
    assert_one_line_error(*run(capsys, *other), "other settings (hr_size")
    assert _files(out) == before


def test_names_that_are_not_utf8(tmp_path, capsys):
    """A clip, a photo folder and output folders whose names are not valid UTF-8 (bytes 0xff,
    0xfe: Python keeps them as lone surrogates) work, and every JSON written is valid UTF-8
    that reads back as the same name."""
    import json
    import sys

    raw = os.fsencode(tmp_path)
    clip = Path(os.fsdecode(raw + b"/clip\xff.mp4"))
    shutil.copy(require(VIDEOS / "Audio_Source_00086.mp4"), clip)
    out = Path(os.fsdecode(raw + b"/faces\xfe"))
    # a subprocess: OpenCV used to crash the whole process (a segmentation fault) on this name
    args = ["enhance", "--video", clip, "--baseline", "bicubic", "--out", out, "--max-frames",
            "14", "--downscale", "0.21"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "mfsr", *args], capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    doc = json.loads((out / "enhance.json").read_bytes().decode("utf-8"))
    assert doc["input"]["path"] == str(clip)
    source = Path(os.fsdecode(raw + b"/photos\xff"))
    shutil.copytree(require(LFW / "Aaron_Eckhart"), source / os.fsdecode(b"Jos\xe9"))
    dataset = Path(os.fsdecode(raw + b"/set\xfe"))
    code, output = run(capsys, "data", "build", "--source", source, "--out", dataset, "--scale",
                       "4", "--frames", "3", "--hr-size", "32", "--counts", "1,0,0")  # fmt: skip
    assert code == 0, output
    meta = json.loads((dataset / "dataset.json").read_bytes().decode("utf-8"))
    assert meta["source"] == str(source)
    (sample,) = (dataset / "train").iterdir()
    assert json.loads((sample / "meta.json").read_bytes().decode("utf-8"))["id"] == sample.name


def test_linked_person_folders_are_followed_once(lfw_subset, tmp_path, capsys):
    """A source made of links to person folders is used (they were skipped without a word);
    a loop, a second link to one folder, a link into /dev and a FIFO are counted skips."""
    import json

    people = sorted(p for p in lfw_subset.iterdir() if p.is_dir())[:6]
    source = tmp_path / "linked"
    source.mkdir()
    for person in people:
        (source / person.name).symlink_to(person, target_is_directory=True)
    (source / "again").symlink_to(people[1], target_is_directory=True)
    (source / "loop").mkdir()
    (source / "loop" / "back").symlink_to(source, target_is_directory=True)
    (source / "devices").symlink_to("/dev", target_is_directory=True)
    (source / "pipes").mkdir()
    os.mkfifo(source / "pipes" / "pipe.jpg")  # reading it would block for ever
    out = tmp_path / "set"
    code, output = run(capsys, *_build_args(source, out)[:-2], "--workers", "1", "--counts",
                       "4,0,0", "--splits", "train")  # fmt: skip
    assert code == 0, output
    report = json.loads((out / "build-report.json").read_text())
    reasons = {Path(item["where"]).name: item["reason"] for item in report["skipped"]}
    assert "already read" in reasons["back"] and "system folder" in reasons["devices"]
    assert "already read" in reasons["again"]
    assert reasons["pipe.jpg"] == "not a regular file"
    assert len(reasons) == 4 and report["written"] == {"train": 4}  # photos through the links


def test_an_evaluation_inside_its_own_test_set_is_refused(tiny_data, capsys):
    out = tiny_data / "test" / "eval"  # a later evaluation would read it as a sample
    assert_one_line_error(*run(capsys, *_evaluate_args(tiny_data, out)), "is inside --data")
    assert not out.exists()
