"""Make docs/figures/enhance-contact-sheet.png: ``mfsr enhance`` on every VoxCeleb2 clip.

Each clip of ``../shared/data/video-voxceleb2`` is shrunk so the face (dlib box, measured on
the first 50 frames at full resolution) is about ``--face-px`` (32) px wide, as in
low-definition footage, then enhanced end to end (:func:`mfsr.enhance.enhance_video`: tracking
on the shrunk frames, windows of N frames, registration, the model) by the ``classical``
baseline and/or a trained model. Per clip the sheet shows, for the middle window, the face
region of: the LR reference crop the model saw (nearest neighbour, pixels visible), its bicubic
upsampling, each method's enhanced face, and the same crop of the original full-resolution clip
(the truth, never seen by the methods).

``--compare`` measures every window against that truth: PSNR (8-bit RGB) over the face box and
over the whole crop, and the dlib descriptor distance (:func:`mfsr.faces.face_descriptor`, the
same face box on every image: the box implied by the crop's LFW framing) of each method's face
to the truth's descriptor. Means over windows, per clip, and the share of windows within dlib's
same-person distance (0.6) are printed and, with ``--json``, saved, with paired Wilcoxon
signed-rank tests of every method against bicubic (windows as the unit, and clips as the
unit). ``--eval-degradation PRESET ...`` repeats the measurement on the same clips with LR
made like the training data (``mfsr data from-video --mode eval``: the degradation model's
blur, sampling, noise and JPEG on the original crops, real motion kept) instead of by plain
shrinking.

    .venv/bin/python docs/make_enhance_figure.py --compare                  # classical only
    .venv/bin/python docs/make_enhance_figure.py --model runs/quick --baseline classical \
        --compare --json quick.json --eval-degradation clean default      # both, + bicubic
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from mfsr.data.degrade import Crop
from mfsr.data.images import read_rgb
from mfsr.data.track import CENTRE_SHIFT, DEFAULT_ENLARGE, render_crop
from mfsr.data.video import VideoReader, track_face
from mfsr.enhance import enhance_video, load_enhancer
from mfsr.enhance.model import Enhancer, bicubic_reference
from mfsr.faces import SAME_PERSON_DISTANCE, Face, face_descriptor

CELL = 160
LABEL = 200
ZOOM = 1.5  # shown region: this x the face box, around the box centre


def face_box(hr: int) -> Face:
    """The face box implied by the crop's LFW framing in an ``hr`` px crop (pixel edges)."""
    size = hr / DEFAULT_ENLARGE
    cx, cy = (hr - 1) / 2.0, (hr - 1) / 2.0 + CENTRE_SHIFT * size
    return Face(
        cx + 0.5 - size / 2, cy + 0.5 - size / 2, cx + 0.5 + size / 2, cy + 0.5 + size / 2, 1
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two ``uint8`` images (MSE over all pixels and channels, 0-255 scale)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def box_pixels(image: np.ndarray, box: Face) -> np.ndarray:
    t, b = round(box.top), round(box.bottom)
    left, r = round(box.left), round(box.right)
    return image[t:b, left:r]


def clip_face_px(clip: Path, frames: int = 50) -> float:
    """Median dlib box size (px) of the face in the first ``frames`` full-resolution frames."""
    track = track_face(clip, max_frames=frames)
    sizes = [f.size for f in track.faces if f is not None]
    if not sizes:
        raise SystemExit(f"{clip}: no face found at full resolution")
    return float(np.median(sizes))


def truths(clip: Path, doc: dict, hr: int) -> dict[int, np.ndarray]:
    """Reference frame -> the window's crop rendered from the original clip at ``hr`` px."""
    wanted = {w["reference_frame"]: w for w in doc["windows"]}
    pw, ph = doc["input"]["processed_frame_size"]
    out: dict[int, np.ndarray] = {}
    for i, frame in enumerate(VideoReader(clip, max(wanted) + 1)):
        if i in wanted:
            fx, fy = pw / frame.shape[1], ph / frame.shape[0]
            cx, cy, side = wanted[i]["crops"][len(wanted[i]["crops"]) // 2]
            crop = Crop((cx + 0.5) / fx - 0.5, (cy + 0.5) / fy - 0.5, side / fx)
            out[i] = render_crop(frame, crop, hr)
    return out


def measure(truth: np.ndarray, images: dict[str, np.ndarray]) -> dict:
    """Per method: PSNR over the face box and the whole crop, descriptor distance to truth."""
    box = face_box(truth.shape[0])
    ref = face_descriptor(truth, box)
    row = {}
    for name, image in images.items():
        row[f"{name}_psnr_face"] = psnr(box_pixels(image, box), box_pixels(truth, box))
        row[f"{name}_psnr_crop"] = psnr(image, truth)
        row[f"{name}_descriptor"] = float(np.linalg.norm(face_descriptor(image, box) - ref))
    return row


def cell(image: np.ndarray, hr: int) -> Image.Image:
    """The face region (ZOOM x the face box) of an image whose full side stands for ``hr`` px."""
    f = image.shape[0] / hr
    box = face_box(hr)
    half = ZOOM * box.size / 2
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    region = tuple(v * f for v in (cx - half, cy - half, cx + half, cy + half))
    return Image.fromarray(image).resize((CELL, CELL), Image.Resampling.NEAREST, box=region)


def sheet_row(name: str, images: list[np.ndarray], hr: int, lines: list[str]) -> Image.Image:
    out = Image.new("RGB", (LABEL + CELL * len(images), CELL), "white")
    draw = ImageDraw.Draw(out)
    draw.multiline_text((6, 8), "\n".join([name, *lines]), fill="black", spacing=3)
    for k, image in enumerate(images):
        out.paste(cell(image, hr), (LABEL + k * CELL, 0))
    return out


def sheet(rows: list[Image.Image], title: str, columns: list[str], per_column: int) -> Image.Image:
    groups = [rows[i : i + per_column] for i in range(0, len(rows), per_column)]
    width, head, gap = rows[0].width, 44, 16
    out = Image.new("RGB", (len(groups) * (width + gap) - gap, head + per_column * CELL), "white")
    draw = ImageDraw.Draw(out)
    draw.text((6, 4), title, fill="black")
    for g, group in enumerate(groups):
        x0 = g * (width + gap)
        for k, column in enumerate(columns):
            draw.text((x0 + LABEL + k * CELL + 4, 26), column, fill="black")
        for r, row in enumerate(group):
            out.paste(row, (x0, head + r * CELL))
    return out


def summarise(results: dict[str, list[dict]], methods: list[str]) -> dict:
    """Means over all windows and per clip; clips where each method beats bicubic; share of
    windows whose descriptor is within dlib's same-person distance of the truth's."""
    rows = [r for per_clip in results.values() for r in per_clip]
    keys = [k for k in rows[0] if k != "reference_frame"]
    means = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    per_clip = {
        c: {k: float(np.mean([r[k] for r in rs])) for k in keys} for c, rs in results.items()
    }
    won = {
        m: {
            "psnr_face": sum(
                v[f"{m}_psnr_face"] > v["bicubic_psnr_face"] for v in per_clip.values()
            ),
            "descriptor": sum(
                v[f"{m}_descriptor"] < v["bicubic_descriptor"] for v in per_clip.values()
            ),
        }
        for m in methods
        if m != "bicubic"
    }
    same = {
        m: float(np.mean([r[f"{m}_descriptor"] < SAME_PERSON_DISTANCE for r in rows]))
        for m in methods
    }
    # Paired two-sided Wilcoxon signed-rank tests against bicubic, with the window and with the
    # clip as the unit (windows of one clip are not independent: the clip-level test is the
    # conservative one).
    tests = {
        m: {
            f"{metric}_{unit}": _wilcoxon(
                [r[f"{m}_{metric}"] for r in units], [r[f"bicubic_{metric}"] for r in units]
            )
            for metric in ("psnr_face", "descriptor")
            for unit, units in (("windows", rows), ("clips", list(per_clip.values())))
        }
        for m in methods
        if m != "bicubic"
    }
    return {
        "windows": len(rows),
        "clips": len(results),
        "mean": means,
        "clips_beating_bicubic": won,
        "same_person_rate": same,
        "wilcoxon_p_vs_bicubic": tests,
        "per_clip": per_clip,
    }


def _wilcoxon(a: list[float], b: list[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences (None if all zero)."""
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if not np.any(d):
        return None
    return float(stats.wilcoxon(d).pvalue)


def run_clip(clip: Path, enhancers: list[Enhancer], args: argparse.Namespace, work: Path) -> tuple:
    """Enhance one clip with every enhancer; returns (row image, per-window metrics, line)."""
    face = clip_face_px(clip)
    d = min(1.0, args.face_px / face)
    docs = []
    for e in enhancers:
        docs.append(
            enhance_video(
                clip,
                e,
                work / e.label / clip.stem,
                downscale=d,
                max_frames=args.max_frames,
                every=args.every,
                register=args.register,
                overwrite=True,
            )
        )
    first = docs[0]
    hr, scale = enhancers[0].hr_size, enhancers[0].scale
    truth = truths(clip, first, hr)

    def images(k: int) -> dict[str, np.ndarray]:
        lr = read_rgb(work / enhancers[0].label / clip.stem / first["windows"][k]["lr"])
        out = {"lr": lr, "bicubic": bicubic_reference(lr[None, None], scale)[0]}
        for e, doc in zip(enhancers, docs):
            out[e.label] = read_rgb(work / e.label / clip.stem / doc["windows"][k]["face"])
        return out

    per_window = []
    for k, w in enumerate(first["windows"] if args.compare else []):
        shown = {n: im for n, im in images(k).items() if n != "lr"}
        per_window.append(
            {"reference_frame": w["reference_frame"], **measure(truth[w["reference_frame"]], shown)}
        )
    mid = len(first["windows"]) // 2
    ref = first["windows"][mid]["reference_frame"]
    lines = [
        f"face {face:.0f} px -> x{d:.3f}",
        f"LR face {first['face_size']['lr_face_px']:.0f} px",
        f"frame {ref} of {first['input']['frames_decoded']}",
        f"{len(first['windows'])} windows",
    ]
    if per_window:
        lines.append("PSNR face dB / descr. dist:")
        for name in ["bicubic", *(e.label for e in enhancers)]:
            p = np.mean([r[f"{name}_psnr_face"] for r in per_window])
            q = np.mean([r[f"{name}_descriptor"] for r in per_window])
            lines.append(f" {name[:12]} {p:.2f} / {q:.3f}")
    row = sheet_row(clip.stem, [*images(mid).values(), truth[ref]], hr, lines)
    return (
        row,
        per_window,
        f"{clip.name}: face {face:.0f} px, x{d:.3f}, {len(first['windows'])} windows",
    )


def degradation_check(
    enhancers: list[Enhancer], preset: str, clips: list[Path], work: Path
) -> dict:
    """The same clips, with LR made like the training data instead of by plain shrinking:
    ``mfsr data from-video --mode eval`` (HR = the reference crop, LR = every frame's crop
    through the degradation model's blur, box sampling, noise and JPEG of ``preset``; the
    real motion stays), a window every 21 frames. Returns mean metrics per method."""
    from mfsr.data.dataset import SequenceDataset
    from mfsr.data.degrade import load_degradation
    from mfsr.data.folders import FolderLayout
    from mfsr.data.from_video import build_from_video
    from mfsr.enhance.model import to_uint8

    e = enhancers[0]
    out = work / f"eval-{preset}"
    for clip in clips:
        cfg = load_degradation(preset)
        build_from_video(
            clip,
            out,
            mode="eval",
            n_frames=e.n_frames,
            scale=e.scale,
            hr_size=e.hr_size,
            stride=21,
            degradation=cfg,
            resume=True,
        )
    ds = SequenceDataset(out / "test", FolderLayout(), n_frames=e.n_frames)
    rows = []
    for i in range(len(ds)):
        sample = ds[i]
        lr = (sample["frames"].permute(0, 2, 3, 1) * 255).round().byte().numpy()[None]
        images = {"bicubic": bicubic_reference(lr, e.scale)[0]}
        images.update({x.label: x(lr)[0] for x in enhancers})
        rows.append(measure(to_uint8(sample["hr"][None])[0], images))
    means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return {"preset": preset, "sequences": len(rows), "mean": means}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("docs/figures/enhance-contact-sheet.png"))
    parser.add_argument("--model", help="checkpoint or run folder (else --baseline)")
    parser.add_argument("--baseline", default=None, help="classical or bicubic (also with --model)")
    parser.add_argument("--lr-size", type=int, default=None, help="LR crop side (default 32)")
    parser.add_argument("--face-px", type=float, default=32.0, help="face width after shrinking")
    parser.add_argument("--max-frames", type=int, default=None, help="frames read per clip")
    parser.add_argument("--every", type=int, default=None, help="window stride (default N)")
    parser.add_argument("--register", default="integer", help="integer, full or none")
    parser.add_argument("--compare", action="store_true", help="PSNR / descriptor vs truth")
    parser.add_argument("--json", type=Path, help="write the comparison here")
    parser.add_argument("--work", type=Path, help="keep the enhance outputs here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--limit", type=int, default=None, help="first K clips only (checks)")
    parser.add_argument(
        "--eval-degradation",
        nargs="+",
        default=[],
        metavar="PRESET",
        help="with --compare: also measure on LR made like the training data (see docstring)",
    )
    parser.add_argument(
        "--flip-ensemble", action="store_true", help="also the model with --flip-ensemble"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    enhancers = []
    if args.model:
        enhancers.append(load_enhancer(args.model, lr_size=args.lr_size))
        if args.flip_ensemble:  # the same model with the mirrored-input self-ensemble
            base = enhancers[0]
            enhancers.append(replace(base, label=f"{base.label}+flip", flip_ensemble=True))
    if args.baseline or not args.model:
        geometry = (
            {"n_frames": enhancers[0].n_frames, "scale": enhancers[0].scale} if enhancers else {}
        )
        enhancers.insert(
            0,
            load_enhancer(baseline=args.baseline or "classical", lr_size=args.lr_size, **geometry),
        )
    methods = ["bicubic", *(e.label for e in enhancers)]
    clips = sorted((args.shared / "video-voxceleb2").glob("*.mp4"))[: args.limit]
    work = args.work or Path(tempfile.mkdtemp(prefix="enhance-figure-"))
    rows, results = [], {}
    for clip in clips:
        row, per_window, line = run_clip(clip, enhancers, args, work)
        rows.append(row)
        results[clip.stem] = per_window
        print(line, flush=True)
    e = enhancers[-1]
    title = (
        f"mfsr enhance, x{e.scale}, {e.n_frames} frames, {e.lr_size} -> {e.hr_size} px; clips "
        f"shrunk to a ~{args.face_px:.0f} px face; registration {args.register}; face region "
        f"({ZOOM} x the face box) shown"
    )
    columns = ["LR input (nearest)", *methods, "original clip (truth)"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet(rows, title, columns, per_column=math.ceil(len(rows) / 2)).save(args.out, optimize=True)
    print(f"wrote {args.out}")
    if not args.compare:
        return
    summary = {
        "models": {x.label: x.info for x in enhancers},
        "lr_size": e.lr_size,
        "register": args.register,
        "face_px": args.face_px,
        **summarise(results, methods),
        "windows_detail": results,
    }
    m = summary["mean"]
    print(f"{summary['windows']} windows, {summary['clips']} clips (means over windows):")
    print("| method | PSNR face (dB) | PSNR crop (dB) | descriptor distance | same person |")
    print("|---|---|---|---|---|")
    for name in methods:
        print(
            f"| {name} | {m[name + '_psnr_face']:.2f} | {m[name + '_psnr_crop']:.2f} | "
            f"{m[name + '_descriptor']:.3f} | {summary['same_person_rate'][name]:.1%} |"
        )
    print(f"clips (of {summary['clips']}) beating bicubic: {summary['clips_beating_bicubic']}")
    for name, p in summary["wilcoxon_p_vs_bicubic"].items():
        print(f"Wilcoxon p vs bicubic, {name}: " + ", ".join(f"{k} {v:.2g}" for k, v in p.items()))
    summary["degradation_checks"] = []
    for preset in args.eval_degradation:
        check = degradation_check(enhancers, preset, clips, work)
        summary["degradation_checks"].append(check)
        print(f"LR made by the {preset!r} degradation preset, {check['sequences']} sequences:")
        print(", ".join(f"{k} {v:.3f}" for k, v in check["mean"].items()))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
