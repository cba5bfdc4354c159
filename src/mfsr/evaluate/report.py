"""Result files of an evaluation: per-image CSV, summary JSON, Markdown table, curve plot.

Every file states the conventions (``summary.json["conventions"]``, the notes under the table),
the counts (claimed = evaluated + excluded, with every exclusion and its reason) and, for each
mean, the number of images it is taken over and its bootstrap 95 % interval.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mfsr import __version__
from mfsr.config import write_text_atomic
from mfsr.data.images import write_figure
from mfsr.errors import MfsrError
from mfsr.metrics import ffr, pixel, sharpness, stats
from mfsr.metrics.table import FaceSettings, column, write_csv

FORMAT_NAME = "mfsr-evaluation"
FORMAT_VERSION = 1

#: Metrics averaged over images: column -> (label, unit, better).
MEANS = {
    "ssim": ("SSIM", "", "higher"),
    "mse": ("MSE", "0-255 scale", "lower"),
    "psnr": ("PSNR", "dB", "higher"),
    "sharpness_diff": ("sharpness diff. CPBD(HR) - CPBD(SR)", "", "closer to 0"),
    "cpbd_hr": ("CPBD of HR", "", "higher = sharper"),
    "cpbd_sr": ("CPBD of output", "", "higher = sharper"),
    "lpips": ("LPIPS", "", "lower"),
    "identity_distance": ("identity distance (dlib)", "", "lower"),
}


def conventions(faces: FaceSettings, lpips_trunk: dict[str, Any] | None, seed: int) -> dict:
    """Every convention of the metrics, as recorded in ``summary.json``."""
    return {
        "images": "outputs and HR quantised to 8 bits (round(255 x), half to even) before "
        "every metric, as saved PNG images would be",
        **_pixel_conventions(),
        "sharpness": {
            "metric": "CPBD (Narvekar & Karam 2011), mfsr's implementation",
            "difference": "CPBD(HR) - CPBD(output): positive = output blurrier than the truth",
            "grey": "8-bit BT.601 luma (Pillow 'L')",
            "block": sharpness.BLOCK,
            "edge_block_fraction": sharpness.EDGE_BLOCK_FRACTION,
            "beta": sharpness.BETA,
            "p_jnb": sharpness.P_JNB,
            "jnb_width": {"contrast<=50": 5, "contrast>50": 3},
            "undefined": "images smaller than 64x64: nan, left out of the mean (counted)",
        },
        "lpips": (
            {
                "net": lpips_trunk["net"],
                "input": "8-bit images / 255, mapped to [-1, 1]",
                "version": "0.1 (lpips package linear layers)",
                "random_trunk": bool(lpips_trunk["random"]),
            }
            if lpips_trunk
            else "not computed"
        ),
        "ffr": _ffr_conventions(faces) if faces.enabled else "not computed",
        "bootstrap": {
            "method": "percentile",
            "resamples": stats.N_RESAMPLES,
            "level": stats.LEVEL,
            "unit": "images (resampled with replacement)",
            "seed": seed,
        },
    }


def _pixel_conventions() -> dict[str, Any]:
    return {
        "mse": "0-255 scale, mean over pixels and the 3 RGB channels of each image, then "
        "averaged over images",
        "psnr": {
            "formula": "10 log10(255^2 / MSE) per image, then averaged over images",
            "peak": pixel.PEAK,
            "cap_db": pixel.PSNR_CAP_DB,
            "identical_images": f"PSNR capped at {pixel.PSNR_CAP_DB:g} dB (counted in "
            "metrics.psnr.n_capped)",
        },
        "ssim": {
            "window": "gaussian",
            "size": pixel.SSIM_WINDOW,
            "sigma": pixel.SSIM_SIGMA,
            "k1": pixel.SSIM_K1,
            "k2": pixel.SSIM_K2,
            "data_range": pixel.PEAK,
            "colour": "RGB, SSIM per channel, channels averaged (not luma)",
            "covariance": "population",
            "border": "mean over the valid region (5 px border where the window does not fit "
            "is excluded); no further border crop",
        },
    }


def _ffr_conventions(faces: FaceSettings) -> dict[str, Any]:
    return {
        "detector": "dlib HOG frontal face detector",
        "upsample": faces.upsample,
        "min_score": faces.min_score,
        "face_choice": "the qualifying box nearest the image centre",
        "descriptor": "dlib_face_recognition_resnet_model_v1 (128-d), 5-point "
        "alignment, 150 px chip, padding 0.25, no jitter",
        "distance": "Euclidean",
        "threshold": faces.threshold,
        "no_face": "output has no detection scoring >= min_score; over all evaluated",
        "identity": "output has no face, or its descriptor is farther than the "
        "threshold from the HR face's; over the samples whose HR has a face",
    }


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: NaN/inf -> None, NumPy scalars/arrays -> Python, dataclasses -> dict."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def summarize(rows: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
    """The summary document (see ``docs/metrics.md``) from the rows and the run description."""
    faces: FaceSettings = run["faces"]
    seed = run.get("bootstrap_seed", stats.SEED)
    exclusions = run["exclusions"]
    evaluated = len(rows)
    if run["claimed"] != evaluated + len(exclusions):  # pragma: no cover - a bug, never data
        raise MfsrError(
            f"internal error: {run['claimed']} claimed != {evaluated} evaluated + "
            f"{len(exclusions)} excluded"
        )
    metrics = {}
    for name in MEANS:
        values = column(rows, name)
        if name == "lpips" and run["lpips_trunk"] is None:
            continue
        if name == "identity_distance" and not faces.enabled:
            continue
        metrics[name] = stats.mean_ci(values, seed=seed)
    metrics["psnr"]["n_capped"] = int(np.sum(column(rows, "psnr") >= pixel.PSNR_CAP_DB))
    summary: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "mfsr_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": run["data"],
        "method": run["method"],
        "counts": {
            "claimed": run["claimed"],
            "evaluated": evaluated,
            "excluded": len(exclusions),
            "excluded_by_reason": dict(Counter(e["reason"] for e in exclusions)),
            "limit": run.get("limit"),
        },
        "excluded": exclusions,
        "conventions": conventions(faces, run["lpips_trunk"], seed),
        "metrics": metrics,
        "lpips_trunk": run["lpips_trunk"],
        "hr_descriptors": run.get("hr_descriptors"),
        "timing": run.get("timing"),
    }
    if faces.enabled:
        sr_found = column(rows, "sr_face") == 1
        hr_found = column(rows, "hr_face") == 1
        distances = column(rows, "identity_distance")
        block = ffr.ffr_summary(distances, sr_found, hr_found, faces.threshold)
        block["no_face"]["ci"] = stats.bootstrap_ci((~sr_found).astype(float), seed=seed)
        fails = ffr.identity_failures(distances, sr_found, faces.threshold)[hr_found]
        block["identity"]["ci"] = stats.bootstrap_ci(fails.astype(float), seed=seed)
        thresholds, rates = ffr.verification_curve(distances, sr_found, hr_found)
        summary["ffr"] = block
        summary["verification_curve"] = {
            "threshold": thresholds,
            "failure_rate": rates,
            "of": int(hr_found.sum()),
            "meaning": "fraction of samples (HR with a face) whose output has no face or a "
            "descriptor farther than the threshold",
        }
    return _jsonable(summary)


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """The human-readable table (``table.md``)."""
    method = summary["method"]
    label = {
        "model": f"model `{method.get('checkpoint', method.get('path'))}`",
        "baseline": f"baseline `{method.get('name')}`",
        "outputs": f"outputs `{method.get('folder')}`",
    }.get(method.get("kind"), "?")
    counts = summary["counts"]
    lines = [f"# Evaluation of {label}", "", f"Test set: `{summary['data']['folder']}`.", ""]
    status = f"Evaluated **{counts['evaluated']} of {counts['claimed']}** samples"
    if counts["excluded"]:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(counts["excluded_by_reason"].items()))
        status += f"; **{counts['excluded']} excluded** ({reasons}; ids in summary.json)"
    lines += [status + ".", ""]
    if counts.get("limit"):
        lines += [f"Only the first {counts['limit']} samples were asked for (`--limit`).", ""]
    lines += ["| metric | mean | 95% CI | n | better |", "|---|---|---|---|---|"]
    digits = {"mse": 2, "psnr": 3}
    for name, block in summary["metrics"].items():
        title, unit, better = MEANS[name]
        title = f"{title} ({unit})" if unit else title
        if name == "lpips" and summary["lpips_trunk"]["random"]:
            title += " **random trunk: not comparable**"
        d = digits.get(name, 4)
        ci = f"[{_fmt(block['ci_low'], d)}, {_fmt(block['ci_high'], d)}]"
        lines.append(f"| {title} | {_fmt(block['mean'], d)} | {ci} | {block['n']} | {better} |")
    if "ffr" in summary:
        f = summary["ffr"]
        for key, title, n in (
            ("no_face", "FFR: no face in output", f["n"]),
            (
                "identity",
                f"FFR: identity (dist > {f['identity']['threshold']:g} or no face)",
                f["identity"]["n_judged"],
            ),
        ):
            block = f[key]
            ci = block["ci"] or [None, None]
            lines.append(
                f"| {title} | {block['count']} ({_fmt(block['rate'], 4)}) | "
                f"[{_fmt(ci[0], 4)}, {_fmt(ci[1], 4)}] | {n} | lower |"
            )
    lines += ["", _notes(summary)]
    return "\n".join(lines) + "\n"


def _notes(summary: dict[str, Any]) -> str:
    c = summary["conventions"]
    notes = [
        "Conventions: " + c["images"] + ".",
        f"MSE: {c['mse']}. PSNR: {c['psnr']['formula']}, capped at {c['psnr']['cap_db']:g} dB "
        f"({summary['metrics']['psnr']['n_capped']} capped).",
        f"SSIM: RGB (channels averaged), Gaussian window {c['ssim']['size']} sigma "
        f"{c['ssim']['sigma']}, data range 255, valid region (no further border crop).",
        f"Sharpness: {c['sharpness']['difference']}; CPBD on 8-bit luma.",
    ]
    if isinstance(c["lpips"], dict):
        trunk = "RANDOM trunk (--random-trunk)" if c["lpips"]["random_trunk"] else "ImageNet trunk"
        notes.append(f"LPIPS: net {c['lpips']['net']}, {trunk}.")
    if isinstance(c["ffr"], dict):
        f = summary["ffr"]
        notes.append(
            f"FFR: dlib HOG (upsample {c['ffr']['upsample']}, score >= "
            f"{c['ffr']['min_score']:g}), descriptor distance threshold "
            f"{c['ffr']['threshold']:g}; {f['no_face']['hr_no_face']} HR image(s) without a face "
            f"are left out of the identity test; identity distance averaged over "
            f"{f['distance']['n']} pairs with both faces."
        )
    b = c["bootstrap"]
    notes.append(
        f"95% CI: percentile bootstrap over images, {b['resamples']} resamples, seed {b['seed']}."
    )
    return "\n".join(f"- {n}" for n in notes)


def plot_curve(summary: dict[str, Any], path: Path) -> None:
    """Verification curve: identity failure rate against the distance threshold (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: heavy, only for plots
    from matplotlib.figure import Figure

    curve = summary["verification_curve"]
    t = np.array(curve["threshold"], dtype=float)
    r = np.array([np.nan if v is None else v for v in curve["failure_rate"]], dtype=float)
    fig = Figure(figsize=(5, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(t, r, color="C0", label="no face or distance > threshold")
    threshold = summary["ffr"]["identity"]["threshold"]
    ax.axvline(threshold, color="C3", ls="--", lw=1, label=f"threshold {threshold:g}")
    no_face = summary["ffr"]["no_face"]["rate"]
    if no_face is not None:
        ax.axhline(no_face, color="0.5", ls=":", lw=1, label="no face (all samples)")
    ax.set_xlabel("descriptor distance threshold")
    ax.set_ylabel("identity failure rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Verification curve (n = {curve['of']})", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    write_figure(fig, path)


def write_results(
    rows: list[dict[str, Any]], run: dict[str, Any], out: Path
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write ``per_image.csv``, ``table.md`` (and ``verification_curve.png`` with FFR), then
    ``summary.json``, into ``out``; returns ``(summary, {name: path})``. ``summary.json`` marks
    a finished evaluation: an earlier one is removed first and the new one is written last
    (atomically), so a folder never pairs a summary with another run's per-image rows."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows, run)
    files = {
        "per_image": out / "per_image.csv",
        "summary": out / "summary.json",
        "table": out / "table.md",
    }
    files["summary"].unlink(missing_ok=True)
    write_csv(rows, files["per_image"])
    write_text_atomic(files["table"], markdown_table(summary))
    if "verification_curve" in summary:
        files["curve"] = out / "verification_curve.png"
        plot_curve(summary, files["curve"])
    write_text_atomic(files["summary"], json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return summary, files
