"""Make docs/figures/data-examples.png: LR frames next to the HR target for real samples.

Rows: x4 and x8 sequences synthesised from LFW photos (``default`` degradation preset) and x8
sequences cut from real clips (``mfsr data from-video``, eval mode: real motion). Each row shows
the N LR frames (nearest-neighbour enlarged, so pixels stay visible) and the HR target.

    .venv/bin/python docs/make_data_figure.py [--shared ../shared/data] [--out docs/figures/...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mfsr.data.dataset import SequenceDataset
from mfsr.data.degrade import Crop, load_degradation, synthesize_sequence
from mfsr.data.from_video import build_from_video
from mfsr.data.images import read_rgb

CELL = 128
LABEL = 150
PHOTOS = [
    "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
    "Serena_Williams/Serena_Williams_0002.jpg",
    "Colin_Powell/Colin_Powell_0001.jpg",
    "Halle_Berry/Halle_Berry_0003.jpg",
]
CLIPS = ["Input_00002.mp4", "Audio_Source_00086.mp4"]


def cell(image: np.ndarray, nearest: bool) -> Image.Image:
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    return Image.fromarray(image).resize((CELL, CELL), resample)


def row(label: str, frames: list[np.ndarray], hr: np.ndarray) -> Image.Image:
    out = Image.new("RGB", (LABEL + CELL * (len(frames) + 1) + 8, CELL), "white")
    ImageDraw.Draw(out).multiline_text((6, CELL // 2 - 20), label, fill="black", spacing=4)
    for i, frame in enumerate(frames):
        out.paste(cell(frame, nearest=True), (LABEL + i * CELL, 0))
    out.paste(cell(hr, nearest=False), (LABEL + len(frames) * CELL + 8, 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("docs/figures/data-examples.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = load_degradation("default")
    rows = []
    for i, rel in enumerate(PHOTOS):
        scale = 4 if i < 2 else 8
        image = read_rgb(args.shared / "lfw" / "images_deepfunneled" / rel)
        rng = np.random.default_rng([args.seed, i])
        frames, hr, _ = synthesize_sequence(image, Crop.centred(250, 250), 256, scale, 7, cfg, rng)
        label = f"LFW photo\nx{scale}: {256 // scale} -> 256\n{rel.split('/')[0]}"
        rows.append(row(label, frames, hr))
    with tempfile.TemporaryDirectory() as tmp:
        for clip in CLIPS:
            build_from_video(
                args.shared / "video-voxceleb2" / clip,
                Path(tmp),
                scale=8,
                hr_size=256,
                max_frames=60,
                seed=args.seed,
                degradation=cfg,
            )
            item = SequenceDataset(Path(tmp) / "test")[0]
            frames = [
                (f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in item["frames"]
            ]
            hr = (item["hr"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            rows.append(row(f"video (real motion)\nx8: 32 -> 256\n{clip}", frames, hr))
            for sample in (Path(tmp) / "test").iterdir():
                for f in sample.iterdir():
                    f.unlink()
                sample.rmdir()
    header = Image.new("RGB", (rows[0].width, 24), "white")
    draw = ImageDraw.Draw(header)
    for k in range(7):
        draw.text(
            (LABEL + k * CELL + 40, 6), f"LR {k}" + (" (ref)" if k == 3 else ""), fill="black"
        )
    draw.text((LABEL + 7 * CELL + 50, 6), "HR target", fill="black")
    sheet = Image.new("RGB", (rows[0].width, 24 + len(rows) * (CELL + 4)), "white")
    sheet.paste(header, (0, 0))
    for i, r in enumerate(rows):
        sheet.paste(r, (0, 24 + i * (CELL + 4)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
