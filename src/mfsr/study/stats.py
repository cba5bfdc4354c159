"""Aggregation over seeds and test faces: Table 1 values with 95 % intervals, and paired
significance tests between methods on the same test images.

Notation: a *method* (a loss, or a baseline) has R runs (seeds; 1 for bicubic and classical)
evaluated on the same n test images; ``values[metric]`` is an ``(R, n)`` array (NaN where the
metric is undefined for an image, e.g. FFR identity when the HR face has no dlib face).

* **Value** of a method: the mean over its runs of each run's mean over images.
* **95 % interval** (``ci_low``, ``ci_high``): percentile bootstrap over *test images*, 2,000
  resamples, seed 0: the images are resampled with replacement, the same resample for every
  run of the method, and the value recomputed. It measures how much the value depends on
  which faces are in the test set, for these trained networks; it does *not* include
  seed-to-seed (training) variation, which is reported separately: the per-seed values,
  their standard deviation and a t-interval over seeds (``seed_t_ci``; with 3 seeds,
  ``t(0.975, 2) = 4.30``, so it is wide, and with so few seeds it is itself uncertain).
* **Paired test** of methods A and B on a metric: per image, each method's value averaged over
  its seeds; the differences A - B over the images where both are defined; two-sided
  **Wilcoxon signed-rank** test (scipy, zero differences dropped) for the p-value, and a
  paired percentile bootstrap interval of the mean difference. p-values are
  **Holm-corrected** within each metric over all pairs tested. Also reported: in how many
  seeds (shared by both) the per-run means differ in the same direction as the overall mean.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats as sps

from mfsr.metrics import stats as mstats

#: metric -> (label, direction): higher / lower is better, or ``zero`` = closer to 0 is better.
METRICS: dict[str, tuple[str, str]] = {
    "ssim": ("SSIM", "higher"),
    "mse": ("MSE", "lower"),
    "psnr": ("PSNR (dB)", "higher"),
    "sharpness_diff": ("sharpness diff.", "zero"),
    "ffr_no_face": ("FFR: no face", "lower"),
    "ffr_identity": ("FFR: identity", "lower"),
    "lpips": ("LPIPS", "lower"),
    "identity_distance": ("identity distance", "lower"),
}
#: Metrics that are 0/1 failures per image (reported as counts and rates).
RATES = ("ffr_no_face", "ffr_identity")
#: Significance level of the Holm-corrected tests.
ALPHA = 0.05


@dataclass
class Method:
    """One row of Table 1: its runs (eval folder names), seeds and per-image values.

    ``kind``: ``loss`` or ``baseline``. ``random_train``: a perceptual loss ran on a random
    trunk in training. ``random_lpips``: the LPIPS metric ran on a random trunk.
    """

    key: str
    label: str
    kind: str
    runs: list[str]
    seeds: list[int | None]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    random_train: bool = False
    random_lpips: bool = False
    loss: str | None = None
    variant: str | None = None  # the study's variant axis (e.g. the frame fusion)
    n_frames: int | None = None  # the study's frame-count axis


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def bootstrap_value(
    v: np.ndarray, n_resamples: int = mstats.N_RESAMPLES, seed: int = mstats.SEED
) -> np.ndarray:
    """Bootstrap distribution of the method value of ``v`` ``(R, n)``: images resampled
    jointly for all runs; returns ``(n_resamples,)``."""
    runs, n = v.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // max(1, runs * n))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = _nanmean(_nanmean(v[:, idx], axis=2), axis=0)
    return out


def _interval(draws: np.ndarray) -> tuple[float | None, float | None]:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return None, None
    alpha = (1 - mstats.LEVEL) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def summarize_metric(v: np.ndarray) -> dict[str, Any]:
    """Value, bootstrap interval, per-seed values, seed SD and t-interval of ``v`` ``(R, n)``;
    for failure metrics also the mean count over seeds and the images judged."""
    per_run = _nanmean(v, axis=1)
    finite = np.isfinite(v)
    value = _nanmean(per_run, axis=0)
    low, high = _interval(bootstrap_value(v))
    out: dict[str, Any] = {
        "mean": _num(value),
        "ci_low": low,
        "ci_high": high,
        "n": int(finite.sum(axis=1).min()) if v.size else 0,
        "seed_values": [_num(x) for x in per_run],
        "seed_sd": None,
        "seed_t_ci": None,
    }
    good = per_run[np.isfinite(per_run)]
    if good.size >= 2:
        sd = float(np.std(good, ddof=1))
        half = float(sps.t.ppf(0.975, good.size - 1)) * sd / np.sqrt(good.size)
        out["seed_sd"] = sd
        out["seed_t_ci"] = [float(good.mean() - half), float(good.mean() + half)]
    return out


def summarize_rates(v: np.ndarray) -> dict[str, Any]:
    """:func:`summarize_metric` plus ``count`` (failures, mean over seeds) and ``of``."""
    out = summarize_metric(v)
    counts = np.nansum(v, axis=1)
    judged = np.isfinite(v).sum(axis=1)
    out["count"] = float(counts.mean())
    out["seed_counts"] = [int(c) for c in counts]
    out["of"] = int(judged.max()) if judged.size else 0
    return out


def summarize(method: Method) -> dict[str, Any]:
    """Every metric of one method (those with values)."""
    out = {}
    for name, v in method.values.items():
        if not np.isfinite(v).any():
            continue
        out[name] = summarize_rates(v) if name in RATES else summarize_metric(v)
    return out


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None entries are left out and stay None)."""
    index = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(index, key=lambda i: pvalues[i])  # type: ignore[arg-type,return-value]
    m = len(order)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))  # type: ignore[arg-type]
        adjusted[i] = running
    return adjusted


def compare(a: Method, b: Method, metric: str) -> dict[str, Any] | None:
    """Paired comparison of methods ``a`` and ``b`` on ``metric`` (see the module docstring);
    None when either lacks the metric."""
    if metric not in a.values or metric not in b.values:
        return None
    va, vb = _nanmean(a.values[metric], 0), _nanmean(b.values[metric], 0)
    keep = np.isfinite(va) & np.isfinite(vb)
    d = (va - vb)[keep]
    if d.size == 0:
        return None
    mean = float(d.mean())
    low, high = _interval(bootstrap_value(d[None, :]))
    if np.all(d == 0):
        p = 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    direction = METRICS[metric][1]
    if direction == "zero":
        ma, mb = abs(float(np.nanmean(va[keep]))), abs(float(np.nanmean(vb[keep])))
        better = a.key if ma < mb else b.key if mb < ma else None
    else:
        sign = 1 if direction == "higher" else -1
        better = a.key if sign * mean > 0 else b.key if sign * mean < 0 else None
    shared = [s for s in a.seeds if s is not None and s in b.seeds]
    agree = 0
    for s in shared:
        ra = a.values[metric][a.seeds.index(s)]
        rb = b.values[metric][b.seeds.index(s)]
        diff = float(_nanmean(ra[keep], 0) - _nanmean(rb[keep], 0))
        agree += int(np.sign(diff) == np.sign(mean) and mean != 0)
    return {
        "a": a.key,
        "b": b.key,
        "metric": metric,
        "n": int(d.size),
        "mean_diff": mean,
        "ci_low": low,
        "ci_high": high,
        "p": _num(p) if np.isfinite(p) else 1.0,
        "better": better,
        "seeds_shared": len(shared),
        "seeds_agree": agree,
    }


def pairs_to_test(methods: list[Method]) -> list[tuple[Method, Method]]:
    """Every pair of losses, plus the single-frame baseline against the multi-frame runs of
    the same loss (the value of the other frames)."""
    losses = [m for m in methods if m.kind == "loss"]
    pairs = list(combinations(losses, 2))
    for m in methods:
        if m.kind == "baseline" and m.loss is not None:
            pairs += [(other, m) for other in losses if other.loss == m.loss]
    return pairs


def significance(methods: list[Method], metrics: list[str]) -> dict[str, list[dict[str, Any]]]:
    """metric -> list of comparisons with ``p_holm`` and ``significant`` (at :data:`ALPHA`)."""
    out: dict[str, list[dict[str, Any]]] = {}
    pairs = pairs_to_test(methods)
    for metric in metrics:
        rows = [r for r in (compare(a, b, metric) for a, b in pairs) if r is not None]
        for row, adj in zip(rows, holm([r["p"] for r in rows])):
            row["p_holm"] = adj
            row["significant"] = bool(adj is not None and adj < ALPHA)
        if rows:
            out[metric] = rows
    return out
