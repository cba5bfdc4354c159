"""Table 1 and the significance tables as files: Markdown, CSV, LaTeX and JSON.

All are rendered from the results document of :func:`mfsr.study.results.results_document`.
Cells are ``mean [95 % low, high]``; failure rates are ``mean count / images judged (rate %
[low, high])``. Rows trained with a random perceptual trunk carry a dagger (†), and the LPIPS
column a double dagger (‡) when the metric ran on a random trunk; both are explained under
the table.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mfsr.config import write_text_atomic

#: Table 1 columns in order: the paper's (SSIM, MSE, PSNR, sharpness difference, FFR), then
#: the identity FFR and LPIPS.
COLUMNS = ("ssim", "mse", "psnr", "sharpness_diff", "ffr_no_face", "ffr_identity", "lpips")
DIGITS = {"ssim": 4, "mse": 2, "psnr": 2, "sharpness_diff": 4, "lpips": 4, "identity_distance": 3}
ARROW = {"higher": "↑", "lower": "↓", "zero": "→ 0"}
TEX_ARROW = {"higher": r"$\uparrow$", "lower": r"$\downarrow$", "zero": r"$\to 0$"}


def _f(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def columns(doc: dict[str, Any]) -> list[str]:
    """The Table 1 columns present in this study (LPIPS/FFR may be switched off)."""
    return [c for c in COLUMNS if c in doc["metrics"]]


def header(doc: dict[str, Any], metric: str, tex: bool = False) -> str:
    """Column title with its direction (and ‡ for a random-trunk LPIPS metric)."""
    info = doc["metrics"][metric]
    arrow = (TEX_ARROW if tex else ARROW)[info["better"]]
    mark = ""
    if metric == "lpips" and doc["random_trunk"]["lpips_metric"]:
        mark = r" $^\ddagger$" if tex else " ‡"
    return f"{info['label']} {arrow}{mark}"


def cell(block: dict[str, Any] | None, metric: str) -> str:
    """One Table 1 cell as text (Markdown / HTML)."""
    if block is None:
        return "—"
    if "count" in block:
        rate = f"{100 * block['mean']:.1f}%" if block["mean"] is not None else "n/a"
        ci = f"[{_pct(block['ci_low'])}, {_pct(block['ci_high'])}]"
        return f"{block['count']:.1f} / {block['of']} ({rate} {ci})"
    d = DIGITS.get(metric, 4)
    return f"{_f(block['mean'], d)} [{_f(block['ci_low'], d)}, {_f(block['ci_high'], d)}]"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def seeds(method: dict[str, Any]) -> str:
    """Number of seeds of a row; ``-`` for a deterministic baseline (bicubic, classical)."""
    return "-" if method["seeds"] == [None] else str(len(method["runs"]))


def row_label(method: dict[str, Any], tex: bool = False) -> str:
    dagger = (r"$^\dagger$" if tex else " †") if method["random_trunk_training"] else ""
    label = _tex(method["label"]) if tex else method["label"]
    return label + dagger


def footnotes(doc: dict[str, Any]) -> list[str]:
    """The notes printed under every table: flags, test set, statistics."""
    notes = []
    rt = doc["random_trunk"]
    if rt["banner"]:
        notes.append(f"† {rt['banner']}.")
    if rt["lpips_banner"]:
        notes.append(f"‡ {rt['lpips_banner']}.")
    t = doc["test"]
    notes.append(
        f"Test set: {t['n_images']} images of `{t['folder']}` (split {t['split']}"
        + (f", first {t['limit']} by id" if t["limit"] else "")
        + ")"
        + (
            f"; {t['ids_dropped']} id(s) missing from some evaluation were left out"
            if t["ids_dropped"]
            else ""
        )
        + "."
    )
    notes.append(
        "FFR cells: failures (mean over seeds) / images judged (rate [95% interval] in %); "
        "no face = dlib finds no face in the output; identity = no face or descriptor distance "
        "> 0.6 from the true face (images whose HR has no dlib face are not judged)."
    )
    notes.append(doc["statistics"])
    return notes


def markdown(doc: dict[str, Any]) -> str:
    """``table1.md``."""
    cols = columns(doc)
    lines = [
        f"# Table 1: study `{doc['study']}`",
        "",
        "| method | seeds | " + " | ".join(header(doc, c) for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for m in doc["methods"]:
        cells = [cell(m["metrics"].get(c), c) for c in cols]
        lines.append(f"| {row_label(m)} | {seeds(m)} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- {n}" for n in footnotes(doc))]
    return "\n".join(lines) + "\n"


def write_csv(doc: dict[str, Any], path: Path) -> None:
    """``table1.csv``: one row per method, per metric mean, interval, seed SD (and counts)."""
    metrics = list(doc["metrics"])
    head = ["method", "kind", "loss", "n_runs", "random_trunk_training", "random_trunk_lpips"]
    for k in metrics:
        head += [f"{k}_mean", f"{k}_ci_low", f"{k}_ci_high", f"{k}_seed_sd", f"{k}_n"]
        if k in ("ffr_no_face", "ffr_identity"):
            head += [f"{k}_count", f"{k}_of"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(head)
        for m in doc["methods"]:
            row: list[Any] = [
                m["label"],
                m["kind"],
                m["loss"] or "",
                len(m["runs"]),
                int(m["random_trunk_training"]),
                int(m["random_trunk_lpips_metric"]),
            ]
            for k in metrics:
                b = m["metrics"].get(k) or {}
                row += [_c(b.get(x)) for x in ("mean", "ci_low", "ci_high", "seed_sd", "n")]
                if k in ("ffr_no_face", "ffr_identity"):
                    row += [_c(b.get("count")), _c(b.get("of"))]
            writer.writerow(row)


def _c(x: Any) -> str:
    return "" if x is None else repr(x) if isinstance(x, float) else str(x)


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&")):
        text = text.replace(a, b)
    return text.replace("#", r"\#").replace("$", r"\$").replace("→", r"$\to$")


def latex(doc: dict[str, Any]) -> str:
    """``table1.tex``: a ``table`` with a ``tabular``; intervals in small type."""
    cols = columns(doc)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\scriptsize",
        rf"\caption{{Loss-function study \texttt{{{_tex(doc['study'])}}}: mean over seeds "
        r"[95\% bootstrap interval over test images].}",
        r"\begin{tabular}{l" + "r" * (len(cols) + 1) + "}",
        r"\hline",
        "Method & seeds & " + " & ".join(header(doc, c, tex=True) for c in cols) + r" \\",
        r"\hline",
    ]
    for m in doc["methods"]:
        cells = []
        for c in cols:
            b = m["metrics"].get(c)
            text = "--" if b is None else cell(b, c).replace("%", r"\%")
            if b is not None and " [" in text and "count" not in b:
                mean, ci = text.split(" [", 1)
                text = rf"{mean} {{\tiny [{ci}}}"
            cells.append(text)
        lines.append(f"{row_label(m, tex=True)} & {seeds(m)} & " + " & ".join(cells) + r" \\")
    lines += [r"\hline", r"\end{tabular}"]
    notes = []
    if doc["random_trunk"]["banner"]:
        notes.append(r"$^\dagger$ " + _tex(doc["random_trunk"]["banner"]) + ".")
    if doc["random_trunk"]["lpips_banner"]:
        notes.append(r"$^\ddagger$ " + _tex(doc["random_trunk"]["lpips_banner"]) + ".")
    if notes:
        lines.append(r"\par\smallskip{\tiny " + " ".join(notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def significance_markdown(doc: dict[str, Any]) -> str:
    """``significance.md``: one table per metric, every pair tested."""
    labels = {m["key"]: m["label"] for m in doc["methods"]}
    lines = [
        f"# Pairwise significance: study `{doc['study']}`",
        "",
        "Per image, each method's value is averaged over its seeds; A - B is tested with the "
        "two-sided Wilcoxon signed-rank test (zero differences dropped), p-values Holm-corrected "
        "within each metric over the pairs listed; significant = adjusted p < 0.05. Mean "
        "difference with its paired bootstrap 95% interval (2,000 resamples of the images). "
        "'seeds' = shared seeds whose run means differ in the same direction.",
        "",
    ]
    for metric, rows in doc["significance"].items():
        info = doc["metrics"][metric]
        d = DIGITS.get(metric, 4)
        mark = " ‡" if metric == "lpips" and doc["random_trunk"]["lpips_metric"] else ""
        lines += [
            f"## {info['label']}{mark} (better: {info['better'].replace('zero', 'closer to 0')})",
            "",
            "| A | B | mean A - B [95% CI] | n | p | p (Holm) | better (if significant) | seeds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            better = labels.get(r["better"], "—") if r["significant"] else "not significant"
            diff = f"{_f(r['mean_diff'], d)} [{_f(r['ci_low'], d)}, {_f(r['ci_high'], d)}]"
            lines.append(
                f"| {labels[r['a']]} | {labels[r['b']]} | {diff} | {r['n']} | {_p(r['p'])} | "
                f"{_p(r['p_holm'])} | {better} | {r['seeds_agree']}/{r['seeds_shared']} |"
            )
        lines.append("")
    for mark, key in (("†", "banner"), ("‡", "lpips_banner")):
        if doc["random_trunk"][key]:
            lines.append(f"{mark} {doc['random_trunk'][key]}.")
    return "\n".join(lines) + "\n"


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "< 1e-4" if p < 1e-4 else f"{p:.4f}"


def write_tables(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write ``table1.{md,csv,tex,json}`` and ``significance.{md,json}`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "table1.md": out / "table1.md",
        "table1.csv": out / "table1.csv",
        "table1.tex": out / "table1.tex",
        "table1.json": out / "table1.json",
        "significance.md": out / "significance.md",
        "significance.json": out / "significance.json",
    }
    write_text_atomic(files["table1.md"], markdown(doc))
    write_csv(doc, files["table1.csv"])
    write_text_atomic(files["table1.tex"], latex(doc))
    text = json.dumps(doc, indent=1, allow_nan=False)
    write_text_atomic(files["table1.json"], text + "\n")
    sig = {
        "study": doc["study"],
        "method": "two-sided Wilcoxon signed-rank on per-image values averaged over seeds; "
        "Holm correction within each metric; paired bootstrap 95% interval of the mean "
        "difference",
        "alpha": 0.05,
        "labels": {m["key"]: m["label"] for m in doc["methods"]},
        "tests": doc["significance"],
    }
    write_text_atomic(files["significance.json"], json.dumps(sig, indent=1) + "\n")
    write_text_atomic(files["significance.md"], significance_markdown(doc))
    return files
