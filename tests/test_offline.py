"""The main commands never touch the network: run them with every socket connection refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import VIDEOS, require

REPO = Path(__file__).resolve().parents[1]

# Runs `mfsr ARGS...` in a fresh interpreter in which any attempt to open a network connection
# or resolve a host name is logged to $NET_LOG and fails (before mfsr or torch is imported).
GUARD = """
import os, socket, sys
def _refuse(*args, **kwargs):
    with open(os.environ["NET_LOG"], "a") as log:
        log.write(repr(args[:2]) + "\\n")
    raise OSError(101, "Network is unreachable (blocked by the test)")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
from mfsr.cli import main
main(sys.argv[1:])
"""


def offline(args: str, log: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NET_LOG": str(log)}
    command = [sys.executable, "-c", GUARD, *args.split()]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_main_commands_run_with_the_network_blocked(tmp_path, lfw_subset):
    clip = require(VIDEOS / "Audio_Source_00086.mp4")
    data, runs, log = tmp_path / "data", tmp_path / "runs", tmp_path / "network-attempts.log"
    steps = [
        f"data build --source {lfw_subset} --out {data} --scale 4 --frames 3 --hr-size 64"
        " --counts 8,4,4",
        f"train --config smoke --set out_dir={runs} --set data.dataset={data}"
        " --set data.build=null --set data.val_limit=4 --set epochs=1",
        f"evaluate --model {runs / 'smoke'} --data {data} --out {tmp_path / 'eval'}"
        " --random-trunk --workers 0 --no-ffr",
        f"evaluate --baseline classical --data {data} --out {tmp_path / 'eval-classical'}"
        " --no-lpips --workers 0",
        "weights status",
        f"enhance --video {clip} --baseline classical --downscale 0.213 --max-frames 24"
        f" --threads 1 --out {tmp_path / 'enhanced-video'}",
        f"data from-video --video {clip} --out {tmp_path / 'from-video'} --max-frames 30",
    ]
    for args in steps:
        result = offline(args, log)
        assert result.returncode == 0, f"{args[:20]}: {result.stderr[-2000:]}"
        assert not log.exists(), f"{args[:20]} tried the network: {log.read_text()}"
    frames = " ".join(str(p) for p in sorted(next(data.glob("test/*")).glob("lr_*.png")))
    result = offline(
        f"enhance --frames {frames} --model {runs / 'smoke'} --out {tmp_path / 'ef'}", log
    )
    assert result.returncode == 0 and not log.exists(), result.stderr[-2000:]
    # Without ImageNet weights and without --random-trunk, LPIPS refuses in one clear line.
    result = offline(
        f"evaluate --baseline bicubic --data {data} --out {tmp_path / 'eval-b'} --workers 0"
        " --no-ffr",
        log,
    )
    assert not log.exists()
    if result.returncode != 0:
        assert "mfsr weights fetch" in result.stderr and "Traceback" not in result.stderr
    # The explicit fetch is the one command that needs the network: it fails in one clear line.
    result = offline("weights fetch alexnet", log)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert log.exists()
