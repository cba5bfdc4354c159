"""``mfsr study``: the paper's loss-function study as one resumable command.

::

    from mfsr.study import load_study_config, run_study

    result = run_study(load_study_config("smoke", ["out_dir=/tmp/studies"]))
    result.counts.trained, result.files["report.html"], result.doc["methods"][0]["metrics"]

Trains U-Net+GEU once per (loss, seed) under identical conditions, evaluates every run and the
baselines (bicubic, classical fusion, the single-frame network) on the same test faces, and
writes Table 1 (Markdown, CSV, LaTeX, JSON) with 95 % intervals, paired significance tests,
Figure-3-style bar charts, a qualitative grid, training curves and a self-contained HTML
report. See ``docs/study.md``.
"""

from __future__ import annotations

from mfsr.study.config import StudyConfig, load_study_config
from mfsr.study.execute import Counts, Reporter
from mfsr.study.run import StudyResult, run_study

__all__ = ["Counts", "Reporter", "StudyConfig", "StudyResult", "load_study_config", "run_study"]
