"""Time from dropping a 10 s 720p clip on the `mfsr serve` page to the first enhanced face.

Makes the clip from a real one (../shared/data/video-voxceleb2/Input_00002.mp4, 224 px, 5 s):
each frame shrunk to 112 px (face about 63 px) and placed in a 1280x720 frame of a still
background, played forwards then backwards (10 s at 25 fps). Then starts `mfsr serve`, uploads
the clip as the page does, and times: upload, tracking until the timeline is ready, and the
first window's model face. Usage: python docs/bench_serve.py [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_helpers import CLIP, Served


def make_clip(path: Path) -> dict:
    reader = cv2.VideoCapture(str(CLIP))
    frames = []
    while True:
        ok, frame = reader.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, (112, 112), interpolation=cv2.INTER_AREA))
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(60, 200, (720, 1280, 3), np.uint8), (0, 0), 6)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (1280, 720))
    sequence = frames + frames[::-1]
    for frame in sequence:
        canvas = background.copy()
        canvas[300:412, 700:812] = frame
        writer.write(canvas)
    writer.release()
    return {"frames": len(sequence), "seconds": len(sequence) / 25.0, "size": "1280x720"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp()))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clip = args.out / "clip-720p-10s.mp4"
    about = make_clip(clip)
    server = Served(args.out / "tmp", "--device", "cpu")
    try:
        t0 = time.perf_counter()
        clip_id = server.upload(clip.name, clip.read_bytes())
        t1 = time.perf_counter()
        summary = server.wait(clip_id, timeout=1800)
        t2 = time.perf_counter()
        assert summary["state"] == "ready", summary
        status, _, _ = server.request(f"/api/clips/{clip_id}/windows/0/model.png")
        t3 = time.perf_counter()
        assert status == 200
    finally:
        server.stop()
    result = {
        **about,
        "windows": len(summary["windows"]),
        "upload_s": round(t1 - t0, 2),
        "tracking_and_cropping_s": round(t2 - t1, 2),
        "first_face_s": round(t3 - t2, 2),
        "drop_to_first_face_s": round(t3 - t0, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
