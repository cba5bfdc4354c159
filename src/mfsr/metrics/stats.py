"""Means with bootstrap confidence intervals (vectorised NumPy, seeded, percentile method)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Bootstrap resamples per interval.
N_RESAMPLES = 2000
#: Confidence level of the intervals.
LEVEL = 0.95
#: Seed of the resampling (fixed: the same values always give the same interval).
SEED = 0
#: Largest block of resamples drawn at once (bounds memory to about 8 x this x n bytes).
_CHUNK = 500


def bootstrap_means(
    values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement, same size) of 1-d ``values``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    if n == 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        stop = min(start + _CHUNK, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def bootstrap_ci(
    values: np.ndarray,
    level: float = LEVEL,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of the mean of 1-d ``values``.

    ``(nan, nan)`` for no values; ``(v, v)`` for one value. The same ``values`` and ``seed``
    always give the same interval.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    means = bootstrap_means(values, n_resamples, seed)
    if means.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def mean_ci(
    values: np.ndarray,
    level: float = LEVEL,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """``{"n", "mean", "ci_low", "ci_high"}`` of the finite entries of ``values``; ``n_nan``
    counts the entries left out (NaN: metric undefined for that image)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    low, high = bootstrap_ci(finite, level, n_resamples, seed)
    return {
        "n": int(finite.size),
        "n_nan": int(values.size - finite.size),
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "ci_low": low,
        "ci_high": high,
    }
