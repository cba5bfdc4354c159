"""Bounded memory: enhancing a long high-resolution video costs no more than a short one.

A real VoxCeleb2 clip is upscaled onto a 1280 x 720 canvas and looped to 600 frames (1.6 GB
of decoded RGB if it were held at once), and a 60-frame cut of the same video is made; both
go through ``mfsr enhance --video`` in a subprocess that reports its own peak RSS. Decoding is
streamed (two passes, window by window), so the long video's peak may exceed the short one's by
far less than the frames it has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import VIDEOS, require

WIDTH, HEIGHT, ZOOM = 1280, 720, 3.0
FRAME_MB = WIDTH * HEIGHT * 3 / 2**20
#: ``python -c`` driver: run mfsr's CLI and write the process's peak RSS (KiB) to a file.
PEAK_RSS_CLI = """
import atexit, os, resource, sys
def report():
    with open(os.environ["PEAK_RSS_FILE"], "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(report)
from mfsr.cli import main
main(sys.argv[1:])
"""


def _write_long_video(clip: Path, out: Path, n_frames: int) -> Path:
    """The clip's frames (224 px) zoomed by ZOOM onto a WIDTH x HEIGHT canvas, played forwards then
    backwards until ``n_frames`` (so the face moves continuously), as MJPG."""
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < 150:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    side = round(frames[0].shape[0] * ZOOM)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (WIDTH, HEIGHT))
    order = frames + frames[::-1]
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    x0, y0 = (WIDTH - side) // 2, (HEIGHT - side) // 2
    for k in range(n_frames):
        big = cv2.resize(order[k % len(order)], (side, side), interpolation=cv2.INTER_LINEAR)
        canvas[y0 : y0 + side, x0 : x0 + side] = big
        writer.write(canvas)
    writer.release()
    return out


def _peak_rss_mb(video: Path, out: Path, tmp: Path) -> tuple[float, dict]:
    report = tmp / f"{video.stem}.rss"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PEAK_RSS_FILE": str(report)}
    args = ["enhance", "--video", str(video), "--baseline", "bicubic", "--out", str(out),
            "--downscale", str(0.213 / ZOOM), "--threads", "1", "--every", "7"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return int(report.read_text()) / 1024, json.loads((out / "enhance.json").read_text())


@pytest.mark.slow
def test_long_high_resolution_video_keeps_memory_bounded(tmp_path):
    clip = require(VIDEOS / "Audio_Source_00086.mp4")
    short = _write_long_video(clip, tmp_path / "short.avi", 60)
    long = _write_long_video(clip, tmp_path / "long.avi", 600)
    short_mb, short_doc = _peak_rss_mb(short, tmp_path / "out-short", tmp_path)
    long_mb, long_doc = _peak_rss_mb(long, tmp_path / "out-long", tmp_path)
    assert long_doc["input"]["frames_decoded"] == 600
    assert len(long_doc["windows"]) > 5 * len(short_doc["windows"])
    print(f"peak RSS: 60 frames {short_mb:.0f} MB, 600 frames {long_mb:.0f} MB")  # pytest -s
    extra_frames = 540 * FRAME_MB  # what holding the long video's extra frames would cost
    assert long_mb - short_mb < 0.1 * extra_frames, (short_mb, long_mb, extra_frames)
