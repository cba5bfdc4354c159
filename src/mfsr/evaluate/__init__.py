"""``mfsr evaluate``: score a model, a baseline or a folder of outputs on a test set.

::

    from mfsr.evaluate import EvalOptions, evaluate

    result = evaluate(EvalOptions(data=Path("data/lfw-x8/test"), out=Path("runs/eval"),
                                  baseline="bicubic"))
    result.summary["metrics"]["psnr"]  # {"n", "n_nan", "mean", "ci_low", "ci_high", ...}

Writes ``per_image.csv``, ``summary.json``, ``table.md`` and ``verification_curve.png``; see
``docs/metrics.md``.
"""

from __future__ import annotations

from mfsr.evaluate.run import EvalOptions, EvalResult, evaluate

__all__ = ["EvalOptions", "EvalResult", "evaluate"]
