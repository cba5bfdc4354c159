"""Measure the motion between the frames a model sees in real footage (docs/data.md "Motion").

For each clip of ``../shared/data/video-voxceleb2``: shrink it so the face (dlib box) is about
``--face-px`` px wide, track the face as ``mfsr enhance`` does (smoothed LFW-framed crops on
the shrunk frames), cut windows of ``--frames`` consecutive frames, and render each frame's
crop from the *full-resolution* clip at ``--render`` px (so the motion is measured on sharp
pixels, not on the 32 px crops). Within each window, the similarity motion of every frame
relative to the centre (reference) frame is estimated by OpenCV's ECC (``MOTION_AFFINE``,
then the similarity part: rotation and zoom from the linear part, shift of the crop centre),
and expressed in pixels of the ``--lr-size`` LR crop the model reads.

This is the residual motion left after tracking (enhance ``--register none``); ``mfsr
enhance``'s default ``integer`` registration then removes whole LR pixels of shift. Prints
percentiles and, with ``--json``, saves every value.

    .venv/bin/python docs/measure_clip_motion.py --json motion.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
from make_enhance_figure import clip_face_px  # docs/ script beside this one

from mfsr.data.degrade import Crop
from mfsr.data.track import plan_windows, render_crop
from mfsr.data.video import VideoReader, track_face

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "video-voxceleb2"


def similarity(reference: np.ndarray, moving: np.ndarray) -> tuple[float, float, float, float]:
    """(dx, dy) px of the image centre, rotation (degrees) and zoom of ``moving`` relative to
    ``reference`` (grayscale float32 images of one size), by ECC with an affine model."""
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    _, warp = cv2.findTransformECC(reference, moving, warp, cv2.MOTION_AFFINE, criteria, None, 5)
    a, t = warp[:, :2].astype(np.float64), warp[:, 2].astype(np.float64)
    # ECC maps reference coordinates to moving ones: x_moving = A x_ref + t
    centre = (np.array(reference.shape[::-1], dtype=np.float64) - 1) / 2
    shift = a @ centre + t - centre
    zoom = math.sqrt(abs(np.linalg.det(a)))
    # counter-clockwise on screen (y down), the convention of mfsr.data.degrade and OpenCV
    rotation = math.degrees(math.atan2(a[0, 1] - a[1, 0], a[0, 0] + a[1, 1]))
    return float(shift[0]), float(shift[1]), rotation, zoom


def clip_motion(clip: Path, args: argparse.Namespace) -> list[dict]:
    d = min(1.0, args.face_px / clip_face_px(clip))  # the shrink of make_enhance_figure.py
    track = track_face(clip, downscale=d, max_frames=args.max_frames)
    windows = plan_windows(track.segments, args.frames, args.frames)
    wanted = {i for w in windows for i in w}
    renders: dict[int, np.ndarray] = {}
    for i, frame in enumerate(VideoReader(clip, max(wanted) + 1 if wanted else 0)):
        if i in wanted:
            fx, fy = track.width / frame.shape[1], track.height / frame.shape[0]
            c = track.crops[i]
            crop = Crop((c.cx + 0.5) / fx - 0.5, (c.cy + 0.5) / fy - 0.5, c.side / fx)
            rgb = render_crop(frame, crop, args.render).astype(np.float32)
            renders[i] = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    to_lr = args.lr_size / args.render
    rows = []
    for w in windows:
        ref = w[len(w) // 2]
        for k in w:
            if k == ref:
                continue
            try:
                dx, dy, rot, zoom = similarity(renders[ref], renders[k])
            except cv2.error:  # ECC did not converge: counted, not measured
                rows.append({"clip": clip.name, "frame": k, "failed": True})
                continue
            rows.append({"clip": clip.name, "frame": k, "reference": ref, "offset": k - ref,
                         "dx": dx * to_lr, "dy": dy * to_lr, "rotation": rot, "zoom": zoom,
                         "face_scale": d})  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=Path, default=CLIPS)
    p.add_argument("--face-px", type=float, default=32.0)
    p.add_argument("--frames", type=int, default=7)
    p.add_argument("--lr-size", type=int, default=32)
    p.add_argument("--render", type=int, default=128)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rows: list[dict] = []
    for clip in sorted(args.clips.glob("*.mp4")):
        got = clip_motion(clip, args)
        ok = [r for r in got if not r.get("failed")]
        print(f"{clip.name}: {len(ok)} frames measured, {len(got) - len(ok)} failed")
        rows += got
    ok = [r for r in rows if not r.get("failed")]
    print(f"{len(ok)} frame pairs in {len({r['clip'] for r in ok})} clips "
          f"({len(rows) - len(ok)} ECC failures)")  # fmt: skip
    qs = (50, 90, 95, 99)
    for name, values in (
        ("|dx| LR px", [abs(r["dx"]) for r in ok]),
        ("|dy| LR px", [abs(r["dy"]) for r in ok]),
        ("|rotation| deg", [abs(r["rotation"]) for r in ok]),
        ("|zoom - 1|", [abs(r["zoom"] - 1) for r in ok]),
    ):
        pct = np.percentile(values, qs)
        print(f"{name:>15}: " + ", ".join(f"p{q} {v:.3f}" for q, v in zip(qs, pct)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=0) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
