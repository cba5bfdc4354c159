"""Ctrl-C and SIGTERM: one line saying what was kept and how to go on; a rerun completes.

Real processes (``python -m mfsr``) in their own session, stopped part-way the way a user or a
scheduler does: SIGINT to the whole process group (Ctrl-C in a terminal), SIGTERM to the
command's process (``kill``, a batch system).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import LFW, overrides, require


def _start(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mfsr", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop_when(proc: subprocess.Popen, ready, how: str) -> tuple[int, str]:
    """Wait until ``ready()``, send Ctrl-C (to the group) or SIGTERM; (exit status, stderr)."""
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never got far enough"
        time.sleep(0.05)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _interrupted_line(code: int, err: str, how: str, *fragments: str) -> None:
    assert code == (130 if how == "ctrl-c" else 143), err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted (")]
    assert len(lines) == 1, err
    said = "interrupted (Ctrl-C)" if how == "ctrl-c" else "interrupted (SIGTERM)"
    assert lines[0].startswith(said), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_build_says_so_and_a_rerun_completes(how, tmp_path):
    out = tmp_path / "set"
    args = ["data", "build", "--source", require(LFW), "--limit", "600", "--scale", "4",
            "--frames", "3", "--hr-size", "32", "--out", out]  # fmt: skip
    proc = _start(*args)
    code, err = _stop_when(proc, lambda: len(list(out.glob("train/*"))) >= 20, how)
    _interrupted_line(code, err, how, "finished samples are kept", "rerun the same command")
    assert not [p for p in out.rglob(".*")]  # no temporary sample folder, no lock
    done = subprocess.run([sys.executable, "-m", "mfsr", *map(str, args)], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "done: 600 samples" in done.stderr, done.stderr


def test_an_interrupted_run_names_its_checkpoint_and_resumes(tiny_dataset, tmp_path):
    data = tiny_dataset(32, (12, 4, 4), ("val", "test"))
    args = ["train", "--config", "smoke"]
    for item in overrides(data, tmp_path, "epochs=400"):
        args += ["--set", item]
    last = tmp_path / "smoke" / "checkpoints" / "last.safetensors"
    code, err = _stop_when(_start(*args), last.exists, "sigterm")
    _interrupted_line(code, err, "sigterm", str(last.parent), "is intact: add --resume")
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]
    log = tmp_path / "smoke" / "train.csv"
    size = log.stat().st_size
    resumed = _start(*args[:3], "--resume", *args[3:])
    code, err = _stop_when(resumed, lambda: log.stat().st_size > size, "ctrl-c")  # once it steps
    _interrupted_line(code, err, "ctrl-c", "add --resume")
