"""Worker processes that die, fail or hang: one line naming what happened, nothing lost.

The training DataLoader, the data build's process pool and the evaluation's metric pool each
get a worker killed with SIGKILL (as the kernel's out-of-memory killer does), and the loader a
worker that raises or never answers. The workers are forked, so the monkeypatched functions
below run inside them.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from helpers import assert_one_line_error, overrides, run
from mfsr.data.dataset import SyntheticSequenceDataset

PARENT = os.getpid()


def in_worker() -> bool:
    return os.getpid() != PARENT


@pytest.fixture(scope="module")
def tiny_data(tiny_dataset):
    return tiny_dataset(32, (12, 4, 4), ("val", "test"))


def train_args(data, out, *extra: str) -> list[str]:
    args = ["train", "--config", "smoke"]
    for item in overrides(
        data, out, "data.workers=1", "epochs=2", "data.loader_timeout_s=20", *extra
    ):
        args += ["--set", item]
    return args


def fail_in_epoch_2(monkeypatch, action, from_position: int = 0) -> None:
    """Run ``action`` in the worker that prepares epoch 2's samples from ``from_position`` on
    (the run's one loader prepares them ahead, while epoch 1 still runs)."""
    original = SyntheticSequenceDataset.sample

    def sample(self, index, key):
        in_worker = torch.utils.data.get_worker_info() is not None
        if key[0] == 1 and key[1] >= from_position and in_worker:
            action()
        return original(self, index, key)

    monkeypatch.setattr(SyntheticSequenceDataset, "sample", sample)


def test_a_killed_loader_worker_stops_the_run_resumably(tiny_data, tmp_path, monkeypatch, capsys):
    # from step 2 of epoch 2 (batch 2): the worker is asked for that batch once the main
    # process has taken step 0's, after epoch 1's checkpoint
    fail_in_epoch_2(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGKILL), from_position=4)
    code, output = run(capsys, *train_args(tiny_data, tmp_path))
    assert_one_line_error(
        code,
        output,
        "training data, epoch 2",
        "DataLoader worker",
        "fewer data.workers",
        "--resume",
    )
    monkeypatch.undo()  # the cause fixed: the run goes on from the end of epoch 1
    code, output = run(capsys, *train_args(tiny_data, tmp_path), "--resume")
    assert code == 0, output
    assert (tmp_path / "smoke" / "summary.json").is_file()


def test_a_worker_killed_while_the_run_validates_is_one_line(
    tiny_data, tmp_path, monkeypatch, capsys
):
    """torch reports a killed worker from its SIGCHLD handler, wherever the main process is:
    here in validation, while the worker prepares the next epoch's first batch."""
    import mfsr.train.loop as loop

    validating = tmp_path / "validating"

    def die_once_validating():
        while not validating.exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)

    def slow_validate(*args, **kwargs):
        validating.touch()
        time.sleep(30)  # the signal's exception ends this
        raise AssertionError("the killed worker went unnoticed")

    fail_in_epoch_2(monkeypatch, die_once_validating)
    monkeypatch.setattr(loop, "validate", slow_validate)
    code, output = run(capsys, *train_args(tiny_data, tmp_path))
    assert_one_line_error(
        code, output, "training data, epoch 2", "is killed by signal", "start the run again"
    )


def test_an_exception_in_a_loader_worker_is_one_line(tiny_data, tmp_path, monkeypatch, capsys):
    def vanish():
        raise OSError("disk vanished")

    fail_in_epoch_2(monkeypatch, vanish)
    code, output = run(capsys, *train_args(tiny_data, tmp_path))
    assert_one_line_error(code, output, "a loader worker failed: OSError: disk vanished")


def test_a_hung_loader_worker_times_out(tiny_data, tmp_path, monkeypatch, capsys):
    fail_in_epoch_2(monkeypatch, lambda: time.sleep(60))
    args = train_args(tiny_data, tmp_path, "data.loader_timeout_s=1")
    code, output = run(capsys, *args)
    assert_one_line_error(code, output, "timed out after 1.0 seconds", "data.loader_timeout_s")


def test_a_killed_build_worker_keeps_the_finished_samples(
    lfw_subset, tmp_path, monkeypatch, capsys
):
    import mfsr.data.build as build

    original, calls = build.synthesize_sequence, []

    def synthesize(*args, **kwargs):
        calls.append(1)  # per process: each forked worker counts its own
        if in_worker() and len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    monkeypatch.setattr(build, "synthesize_sequence", synthesize)
    out = tmp_path / "set"
    args = ["data", "build", "--source", lfw_subset, "--out", out, "--scale", "4"]
    args += ["--hr-size", "32", "--frames", "3", "--counts", "12,4,4", "--workers", "2"]
    code, output = run(capsys, *args)
    assert_one_line_error(code, output, "a worker process died abruptly", "fewer --workers")
    finished = len(list(out.glob("*/*/hr.png")))
    assert finished >= 2  # the killed worker had written two
    monkeypatch.undo()
    code, output = run(capsys, *args)
    assert code == 0, output
    assert len(list(out.glob("*/*/hr.png"))) == 20


def test_a_killed_metric_worker_is_one_line(tiny_data, tmp_path, monkeypatch, capsys):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import mfsr.evaluate.run as evaluate_run

    def dying_pool(workers):  # forked, so the initializer needs no pickling
        kill = lambda: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
        context = multiprocessing.get_context("fork")
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=kill)

    monkeypatch.setattr(evaluate_run, "_make_pool", dying_pool)
    out = tmp_path / "eval"
    args = ["evaluate", "--baseline", "bicubic", "--data", tiny_data, "--out", out]
    code, output = run(capsys, *args, "--workers", "1", "--no-ffr", "--no-lpips")
    assert_one_line_error(code, output, "metric worker process died", "fewer --workers")
    assert not (out / "summary.json").exists()


def test_workers_start_after_opencv_ran_in_parallel_here(tiny_data, tmp_path, capsys):
    """Once this process has run a parallel OpenCV call, setting OpenCV's thread count inside
    a forked worker waits forever; the loader forks its workers with the pool stopped."""
    import cv2
    import numpy as np

    image = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    with_threads = max(2, cv2.getNumThreads())
    cv2.setNumThreads(with_threads)
    for _ in range(3):
        cv2.GaussianBlur(image, (31, 31), 5)  # starts OpenCV's worker threads
    args = train_args(tiny_data, tmp_path, "epochs=1", "data.loader_timeout_s=30")
    code, output = run(capsys, *args)
    assert code == 0, output
    assert cv2.getNumThreads() == with_threads  # restored
