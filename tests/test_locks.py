"""One writer per folder (mfsr.locks): two processes writing one run, dataset, evaluation, study
or enhance output at once: the second is refused with the holder's pid, nothing is mixed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import overrides
from mfsr.errors import MfsrError
from mfsr.locks import LOCK_NAME, folder_lock

HOLD = """import sys, time; from pathlib import Path; from mfsr.locks import folder_lock
with folder_lock(Path(sys.argv[1]), "test"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture(scope="module")
def tiny_data(tiny_dataset) -> Path:
    return tiny_dataset(32, (12, 4, 0), ("val",))


def holder(folder: Path, seconds: float = 60) -> subprocess.Popen:
    """Another process holding ``folder``'s lock for ``seconds`` (or until killed)."""
    cmd = [sys.executable, "-c", HOLD, str(folder), str(seconds)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"held"
    return proc


def mfsr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mfsr", *args], capture_output=True, text=True, timeout=300
    )


def test_second_holder_is_refused_with_the_pid_and_a_dead_holders_lock_is_taken(tmp_path):
    folder = tmp_path / "run"
    proc = holder(folder)
    try:
        refused = rf"{folder}: another mfsr process \(pid {proc.pid}\)"
        with pytest.raises(MfsrError, match=refused), folder_lock(folder, "run"):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)  # dies holding it: no clean-up ran
        proc.wait()
    assert (folder / LOCK_NAME).exists()
    with folder_lock(folder, "run"):  # the kernel released it with the process
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert list(folder.iterdir()) == []  # the lock file goes with its holder


def test_waiting_for_a_holder_and_nesting_in_one_process(tmp_path):
    """A training that finds its dataset being built waits (with a warning naming the builder)
    instead of being refused; a process that holds a folder may lock it again (nested)."""
    folder = tmp_path / "set"
    proc = holder(folder, seconds=1.5)
    started = time.monotonic()
    waiting = rf"waiting for mfsr process {proc.pid}"
    with (
        pytest.warns(UserWarning, match=waiting),
        folder_lock(folder, "dataset", wait=True),
        folder_lock(folder, "dataset"),
    ):
        assert time.monotonic() - started > 1.0  # acquired only once the holder let go
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())
    proc.wait()


def test_lock_leaves_written_folders_and_names_bad_places(tmp_path):
    with folder_lock(tmp_path / "out", "evaluation"):
        (tmp_path / "out" / "result.txt").write_text("kept")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["result.txt"]
    (tmp_path / "file").write_text("")
    with (
        pytest.raises(MfsrError, match="file: exists and is not a folder"),
        folder_lock(tmp_path / "file", "run"),
    ):
        pass
    with folder_lock(tmp_path / "new" / "runs" / "run", "run"):
        pass
    assert not (tmp_path / "new").exists()  # made by the lock, nothing written: removed
    (tmp_path / "kept").mkdir()
    with folder_lock(tmp_path / "kept" / "a" / "b", "run"):
        (tmp_path / "kept" / "a" / "note.txt").write_text("written beside the run")
    assert sorted(p.name for p in (tmp_path / "kept" / "a").iterdir()) == ["note.txt"]
    with (
        pytest.raises(MfsrError, match=r"cannot write the run folder \(.*file is a file, not a"),
        folder_lock(tmp_path / "file" / "run", "run"),
    ):
        pass
    # only the folders the lock really made are removed: not an empty one that was there
    # (reached through "..") and not on a failure half-way either
    (tmp_path / "keep").mkdir()
    with folder_lock(tmp_path / "typo" / ".." / "keep" / "run", "run"):
        pass
    assert (tmp_path / "keep").is_dir() and not (tmp_path / "typo").exists()
    with (
        pytest.raises(MfsrError, match="cannot write"),
        folder_lock(tmp_path / "made" / ("x" * 300), "run"),
    ):
        pass
    assert not (tmp_path / "made").exists()
    if os.geteuid() != 0:  # root writes into read-only folders
        (tmp_path / "ro").mkdir(mode=0o500)
        with (
            pytest.raises(MfsrError, match="cannot write"),
            folder_lock(tmp_path / "ro" / "x", "run"),
        ):
            pass


def test_two_trainings_of_one_run_at_once(tiny_data, tmp_path):
    """Both real: the second starts while the first trains and is refused; the first finishes."""
    sets = [a for s in overrides(tiny_data, tmp_path, "epochs=4") for a in ("--set", s)]
    first = subprocess.Popen(
        [sys.executable, "-m", "mfsr", "train", "--config", "smoke", *sets],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = tmp_path / "smoke" / LOCK_NAME
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()) and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = mfsr("train", "--config", "smoke", *sets)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"another mfsr process (pid {first.pid}) is writing this run" in second.stderr
    rows = (tmp_path / "smoke" / "train.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 4  # one run's log: header + 4 epochs x 4 steps, not mixed
    assert not lock.exists()


@pytest.mark.parametrize("command", ["build", "evaluate", "study", "enhance"])
def test_other_writers_of_a_locked_folder_are_refused(command, tiny_data, tmp_path, lfw_subset):
    out = tmp_path / "out"
    args = {
        "build": ["data", "build", "--source", str(lfw_subset), "--out", str(out)],
        "evaluate": ["evaluate", "--data", str(tiny_data), "--split", "val", "--baseline",
                     "bicubic", "--out", str(out), "--no-ffr", "--no-lpips"],
        "study": ["study", "--config", "smoke", "--set", f"out_dir={tmp_path}",
                  "--set", "name=out"],
        "enhance": ["enhance", "--baseline", "classical", "--out", str(out), "--frames",
                    *map(str, sorted(lfw_subset.glob("*/*.jpg"))[:3])],
    }[command]  # fmt: skip
    proc = holder(out)
    try:
        result = mfsr(*args)
    finally:
        proc.kill()
        proc.wait()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"another mfsr process (pid {proc.pid})" in result.stderr
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # nothing written beside the holder's
