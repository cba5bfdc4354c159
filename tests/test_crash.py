"""Crash safety: a CPU training run killed with SIGKILL at 10 moments, then ``--resume``.

The moments: once while Python and torch are still starting, seven times at random training
steps (kills land anywhere: in a step, in validation, in a log or checkpoint write), and twice
*inside* a checkpoint write (the writer is made to stop half-way and block, so the kill is
certain to hit it). After every kill the checkpoint on disk must be whole; after the last resume
the weights must equal an uninterrupted run's bit for bit and the training log must have each
step exactly once.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import overrides
from mfsr.train.checkpoint import read_checkpoint, split_prefix

STEPS = 24  # epochs=6 x steps_per_epoch=4

#: ``python -c`` driver: mfsr's CLI with safetensors' writer stopping half-way through the
#: HALT_AT_SAVE-th file it writes (half the bytes on disk, a marker file, then a long sleep).
HALTING_CLI = """
import os, sys, time
import safetensors.torch as st
real, calls = st.save_file, [0]
def halting(tensors, filename, metadata=None):
    calls[0] += 1
    if calls[0] == int(os.environ["HALT_AT_SAVE"]):
        real(tensors, filename, metadata=metadata)
        with open(filename, "rb") as f:
            data = f.read()
        with open(filename, "wb") as f:
            f.write(data[: len(data) // 2])
        open(os.environ["HALT_MARKER"], "w").close()
        time.sleep(600)
    return real(tensors, filename, metadata=metadata)
st.save_file = halting
from mfsr.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def tiny_data(tiny_dataset) -> Path:
    return tiny_dataset(32, (12, 4, 0), ("val",))


def _args(data: Path, out: Path, name: str) -> list[str]:
    sets = overrides(data, out, "epochs=6", "checkpoint_every=1", "log_every=1")
    return ["train", "--config", "smoke", "--name", name, *[a for s in sets for a in ("--set", s)]]


def _start(args: list[str], halt_at: int | None = None, marker: Path | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if halt_at is None:
        cmd = [sys.executable, "-m", "mfsr", *args]
    else:
        env.update(HALT_AT_SAVE=str(halt_at), HALT_MARKER=str(marker))
        cmd = [sys.executable, "-c", HALTING_CLI, *args]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _logged_steps(run: Path) -> int:
    try:
        return len((run / "train.csv").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


def _wait_for(condition, proc, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stderr.read()[-2000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"


def _model(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = read_checkpoint(run / "checkpoints" / "last.safetensors")
    return split_prefix(tensors, "model")


@pytest.mark.slow
def test_ten_kills_then_resume_equals_an_uninterrupted_run(tiny_data, tmp_path):
    ref = _start(_args(tiny_data, tmp_path, "reference"))
    assert ref.wait(timeout=300) == 0, ref.stderr.read()

    rng = random.Random()
    run = tmp_path / "victim"
    last = run / "checkpoints" / "last.safetensors"
    step_targets = sorted(rng.sample(range(2, STEPS - 6), 7))
    moments = ["startup", *[("step", s) for s in step_targets]]
    moments.insert(rng.randint(2, 5), "checkpoint-write")
    moments.insert(rng.randint(6, 9), "checkpoint-write")
    log = []
    for moment in moments:
        args = _args(tiny_data, tmp_path, "victim") + (["--resume"] if last.exists() else [])
        if moment == "startup":
            proc = _start(args)
            time.sleep(rng.uniform(0.0, 1.0))
        elif moment == "checkpoint-write":
            marker = tmp_path / f"halted-{len(log)}"
            proc = _start(args, halt_at=rng.randint(1, 3), marker=marker)
            _wait_for(marker.exists, proc, "the halted checkpoint write")
        else:
            target = max(moment[1], _logged_steps(run) + 1)
            proc = _start(args)
            _wait_for(lambda t=target: _logged_steps(run) >= t, proc, f"step {target}")
        _kill(proc)
        log.append((moment, _logged_steps(run)))
        if last.exists():
            read_checkpoint(last)  # whole and verified after every kill, never half-written
        if moment == "checkpoint-write":
            assert list(run.glob("checkpoints/.*.tmp-*")), "the kill did not hit a write"

    final = _start([*_args(tiny_data, tmp_path, "victim"), "--resume"])
    assert final.wait(timeout=300) == 0, final.stderr.read()
    a, b = _model(tmp_path / "reference"), _model(run)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"weights differ after kills {log}"
    with open(run / "train.csv") as handle:
        steps = [int(r["step"]) for r in csv.DictReader(handle)]
    assert steps == list(range(1, STEPS + 1)), log
    assert not list(run.glob("checkpoints/.*.tmp-*")), "stale temporary checkpoint files left"


@pytest.mark.parametrize(
    "left_by_the_kill",
    ["", "1,0,0.5\r\n2,0,0.4\r\n", 'step,epoch,loss,terms\r\n1,0,0.5,"{}"\r\n2,0,0.4,"{}"\r\n1'],
    ids=["empty-file", "no-header", "torn-last-line"],
)
def test_resume_repairs_what_a_kill_leaves_in_the_csv_logs(tmp_path, left_by_the_kill):
    """A kill between open and write leaves an empty file; a later append must not then
    write rows without a header, and a torn row (``1`` of ``12,...``) must not become step 1."""
    from mfsr.train.logs import TRAIN_FIELDS, RunLog

    (tmp_path / "train.csv").write_text(left_by_the_kill, encoding="utf-8")
    log = RunLog(tmp_path, enabled=True, resume_step=1)
    values = {"loss": 0.3, "terms": {"mse": 0.3}, "lr": 1e-3, "grad_norm": 1.0}
    log.train(2, 0, {**values, "samples_per_s": 5.0})
    log.close()
    with open(tmp_path / "train.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == TRAIN_FIELDS
    expected = [2] if left_by_the_kill == "" else [1, 2]
    assert [int(r["step"]) for r in rows] == expected
    assert rows[-1]["loss"] == "0.3"
