"""The study's figures (PNG, matplotlib's Agg canvas, no global pyplot state).

* ``bar_<metric>.png``: Figure-3-style bars, one per method: the value (mean over seeds),
  95 % bootstrap interval as error bar, each seed's value as a dot; baselines grey, rows with
  a random-trunk training loss hatched.
* ``qualitative.png``: for fixed test faces, the LR reference frame (nearest-neighbour
  enlarged), bicubic, each loss's network (one seed) and the HR truth.
* ``curves.png``: validation PSNR and SSIM of every run against the optimizer step, with the
  bicubic validation PSNR for reference.
* ``frames.png`` (studies with a ``frames`` axis): PSNR and FFR identity against the frame
  count N, one line per loss and variant, with 95 % intervals and seed dots; the baselines as
  horizontal lines.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from mfsr.data.images import write_figure

LINESTYLES = ("-", "--", ":", "-.")
#: metrics of ``frames.png``
FRAMES_METRICS = ("psnr", "ffr_identity")


def _figure(width: float, height: float, dpi: int = 110):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: heavy, only for plots
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _colours(doc: dict[str, Any]) -> dict[str, Any]:
    out, k = {}, 0
    for m in doc["methods"]:
        if m["kind"] == "loss":
            out[m["key"]] = f"C{k % 10}"
            k += 1
        else:
            out[m["key"]] = {"bicubic": "0.75", "classical": "0.55"}.get(m["key"], "0.35")
    return out


def bar_chart(doc: dict[str, Any], metric: str, path: Path) -> None:
    """One bar chart of ``metric`` over all methods (see the module docstring)."""
    info = doc["metrics"][metric]
    colours = _colours(doc)
    methods = [m for m in doc["methods"] if m["metrics"].get(metric)]
    rate = metric.startswith("ffr")
    scale = 100.0 if rate else 1.0
    fig = _figure(max(4.5, 0.9 * len(methods) + 1.5), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for x, m in enumerate(methods):
        b = m["metrics"][metric]
        mean = (b["mean"] or 0.0) * scale
        low = (b["ci_low"] if b["ci_low"] is not None else b["mean"] or 0.0) * scale
        high = (b["ci_high"] if b["ci_high"] is not None else b["mean"] or 0.0) * scale
        ax.bar(
            x,
            mean,
            color=colours[m["key"]],
            edgecolor="black",
            linewidth=0.6,
            hatch="//" if m["random_trunk_training"] else None,
        )
        ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], color="black", capsize=4, lw=1)
        seeds = [v * scale for v in b["seed_values"] if v is not None]
        if len(seeds) > 1:
            jitter = np.linspace(-0.18, 0.18, len(seeds))
            ax.scatter(x + jitter, seeds, s=12, color="black", zorder=3)
    labels = [m["label"] + (" †" if m["random_trunk_training"] else "") for m in methods]
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
    if metric == "sharpness_diff":
        ax.axhline(0, color="black", lw=0.8)
    better = {"higher": "higher is better", "lower": "lower is better", "zero": "closer to 0"}
    unit = " (%)" if rate else ""
    mark = " ‡" if metric == "lpips" and doc["random_trunk"]["lpips_metric"] else ""
    ax.set_ylabel(info["label"] + unit + mark)
    ax.set_title(
        f"{info['label']}{mark}: {better[info['better']]}\n"
        "bars: mean over seeds, error bars: 95% bootstrap interval, dots: seeds",
        fontsize=8,
    )
    if not rate and metric in ("psnr", "ssim"):
        values = [m["metrics"][metric]["ci_low"] or m["metrics"][metric]["mean"] for m in methods]
        top = max((m["metrics"][metric]["ci_high"] or 0) for m in methods)
        bottom = min(v for v in values if v is not None)
        ax.set_ylim(bottom - 0.15 * (top - bottom + 1e-9), top + 0.1 * (top - bottom + 1e-9))
    notes = []
    if any(m["random_trunk_training"] for m in methods):
        notes.append("† hatched: trained with a RANDOM perceptual trunk (not the paper's loss)")
    if mark:
        notes.append("‡ LPIPS metric with a RANDOM AlexNet trunk (not comparable)")
    if notes:
        fig.text(0.01, 0.005, "\n".join(notes), fontsize=6.5, color="firebrick", va="bottom")
    fig.tight_layout(rect=(0, 0.05 * len(notes), 1, 1))
    write_figure(fig, path)


def _read_val(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cols = ("step", "psnr", "ssim", "bicubic_psnr")
    return {
        c: np.array([float(r[c]) if r.get(c) not in (None, "") else np.nan for r in rows])
        for c in cols
    }


def curves(doc: dict[str, Any], runs_dir: Path, path: Path) -> None:
    """Validation PSNR and SSIM of every trained run against the step (``val.csv``)."""
    colours = _colours(doc)
    fig = _figure(10, 3.8)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    bicubic = None
    for m in doc["methods"]:
        if m["seeds"] and m["seeds"][0] is not None:  # trained runs (not bicubic, classical)
            for k, (run, seed) in enumerate(zip(m["runs"], m["seeds"])):
                val = _read_val(runs_dir / run / "val.csv")
                if not val or not len(val["step"]):
                    continue
                if bicubic is None and m["kind"] == "loss":
                    bicubic = float(np.nanmean(val["bicubic_psnr"]))
                label = f"{m['label']} s{seed}" if seed is not None else m["label"]
                for ax, col in zip(axes, ("psnr", "ssim")):
                    ax.plot(
                        val["step"],
                        val[col],
                        color=colours[m["key"]],
                        ls=LINESTYLES[k % len(LINESTYLES)],
                        marker="o",
                        ms=2.5,
                        lw=1.2,
                        label=label,
                    )
    if bicubic is not None and np.isfinite(bicubic):
        axes[0].axhline(bicubic, color="0.5", ls="--", lw=1, label="bicubic (val)")
    for ax, title in zip(axes, ("validation PSNR (dB)", "validation SSIM")):
        ax.set_xlabel("optimizer step")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    write_figure(fig, path)


def qualitative(
    columns: list[tuple[str, Any]],
    samples: list[Any],
    path: Path,
) -> None:
    """A grid: one row per sample, one column per ``(title, images)``; ``images`` is a list of
    ``uint8 (H, W, 3)`` arrays (one per sample). Titles ending in † are drawn in red."""
    rows, cols = len(samples), len(columns)
    w = columns[-1][1][0].shape[1]
    size = max(1.3, min(2.2, w / 64))
    fig = _figure(cols * size, rows * size + 0.5, dpi=max(80, int(w / size) + 4))
    for c, (title, images) in enumerate(columns):
        for r in range(rows):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.imshow(images[r], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                red = title.endswith("†")
                ax.set_title(title, fontsize=7, color="firebrick" if red else "black")
            if c == 0:
                ax.set_ylabel(str(samples[r])[:22], fontsize=5)
    fig.subplots_adjust(left=0.04, right=0.99, top=1 - 0.4 / (rows * size + 0.5), bottom=0.01)
    fig.subplots_adjust(wspace=0.03, hspace=0.03)
    write_figure(fig, path)


def frames_plot(doc: dict[str, Any], path: Path, metrics: tuple[str, ...] = FRAMES_METRICS) -> None:
    """PSNR and FFR identity against the frame count N (see the module docstring)."""
    metrics = tuple(m for m in metrics if m in doc["metrics"])
    fig = _figure(4.6 * len(metrics), 3.6)
    lines: dict[str, list[dict[str, Any]]] = {}
    for m in doc["methods"]:
        if m["kind"] == "loss" and m.get("n_frames"):
            name = " ".join(x for x in (m["loss"], m.get("variant")) if x)
            lines.setdefault(name, []).append(m)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        scale = 100.0 if metric.startswith("ffr") else 1.0
        for k, (name, rows) in enumerate(lines.items()):
            rows = sorted(rows, key=lambda r: r["n_frames"])
            xs = np.array([r["n_frames"] for r in rows], dtype=float) + 0.06 * (k - 0.5)
            b = [r["metrics"][metric] for r in rows]
            ys = np.array([x["mean"] * scale for x in b])
            err = np.array([[y - x["ci_low"] * scale, x["ci_high"] * scale - y]
                            for y, x in zip(ys, b)]).T  # fmt: skip
            ax.errorbar(xs, ys, yerr=err, color=f"C{k}", marker="o", capsize=3, lw=1.3, label=name)
            for x, r in zip(xs, b):
                seeds = [v * scale for v in r["seed_values"] if v is not None]
                ax.scatter([x] * len(seeds), seeds, s=9, color=f"C{k}", alpha=0.6, zorder=3)
        for m in doc["methods"]:
            if m["kind"] == "baseline" and m["metrics"].get(metric) and m["seeds"] == [None]:
                y = m["metrics"][metric]["mean"] * scale
                ax.axhline(y, color="0.5", ls="--", lw=0.9)
                ax.annotate(m["label"], (0.01, y), xycoords=("axes fraction", "data"), fontsize=7)
        ax.set_xticks(sorted({r["n_frames"] for rows in lines.values() for r in rows}))
        ax.set_xlabel("frames N")
        info = doc["metrics"][metric]
        better = "higher" if info["better"] == "higher" else "lower"
        ax.set_ylabel(info["label"] + (" (%)" if scale != 1.0 else ""))
        ax.set_title(f"{info['label']} against N ({better} is better)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    write_figure(fig, path)
