"""``report.html``: one self-contained page that opens offline in any browser.

Figures are embedded as base64 ``data:`` URIs, the style sheet is inline, there is no script
and no external resource; the only links are relative ones to the study's own result files
(tables, JSON), which sit beside the report.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from mfsr.config import write_text_atomic
from mfsr.study import tables

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1300px;color:#222;line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:3px;
margin-top:1.6em}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
table.pairs td:nth-child(2),table.pairs th:nth-child(2){text-align:left}
small{color:#555}
tr.baseline td{background:#fafafa;color:#444}tr.random td:first-child{color:#b00020}
.banner{background:#fde8e8;border:2px solid #b00020;color:#7a0015;padding:10px 14px;
margin:12px 0;font-weight:600;border-radius:4px}
.note{font-size:12px;color:#555}.sig{font-weight:600}.ns{color:#888}
.grid{display:flex;flex-wrap:wrap;gap:10px}.grid img{max-width:420px;border:1px solid #ddd}
img.wide{max-width:100%;border:1px solid #ddd}img.full{width:100%;max-width:1100px}
code{background:#f4f4f4;padding:0 3px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:14px}
dt{font-weight:600}dd{margin:0}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _img(path: Path, cls: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    attr = f' class="{cls}"' if cls else ""
    return f'<img{attr} alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'


def _cell(block: dict[str, Any] | None, metric: str) -> str:
    """A Table 1 cell on two lines: value, then the interval (small)."""
    text = tables.cell(block, metric)
    head, sep, tail = text.partition(" (" if block and "count" in block else " [")
    if not sep:
        return _e(text)
    tail = tail[:-1] if sep == " (" else "[" + tail
    return f"{_e(head)}<br><small>{_e(tail)}</small>"


def _table1(doc: dict[str, Any]) -> str:
    cols = tables.columns(doc)
    head = "".join(f"<th>{_e(tables.header(doc, c))}</th>" for c in cols)
    rows = []
    for m in doc["methods"]:
        flags = (("baseline", m["kind"] != "loss"), ("random", m["random_trunk_training"]))
        cls = " ".join(c for c, on in flags if on)
        cells = "".join(f"<td>{_cell(m['metrics'].get(c), c)}</td>" for c in cols)
        rows.append(
            f'<tr class="{cls}"><td>{_e(tables.row_label(m))}</td><td>{tables.seeds(m)}</td>'
            f"{cells}</tr>"
        )
    notes = "".join(f"<li>{_e(n.replace('`', ''))}</li>" for n in tables.footnotes(doc))
    return (
        f"<table><tr><th>method</th><th>seeds</th>{head}</tr>{''.join(rows)}</table>"
        f'<ul class="note">{notes}</ul>'
    )


def _significance(doc: dict[str, Any]) -> str:
    labels = {m["key"]: m["label"] for m in doc["methods"]}
    parts = []
    for metric, rows in doc["significance"].items():
        info = doc["metrics"][metric]
        d = tables.DIGITS.get(metric, 4)
        body = []
        for r in rows:
            sig = r["significant"]
            better = labels.get(r["better"], "—") if sig else "not significant"
            diff = (
                f"{tables._f(r['mean_diff'], d)} "
                f"[{tables._f(r['ci_low'], d)}, {tables._f(r['ci_high'], d)}]"
            )
            body.append(
                f"<tr><td>{_e(labels[r['a']])}</td><td>{_e(labels[r['b']])}</td><td>{diff}</td>"
                f"<td>{r['n']}</td><td>{tables._p(r['p'])}</td><td>{tables._p(r['p_holm'])}</td>"
                f'<td class="{"sig" if sig else "ns"}">{_e(better)}</td>'
                f"<td>{r['seeds_agree']}/{r['seeds_shared']}</td></tr>"
            )
        better = info["better"].replace("zero", "closer to 0")
        mark = (
            " ‡ (random trunk)" if metric == "lpips" and doc["random_trunk"]["lpips_metric"] else ""
        )
        parts.append(
            f"<h3>{_e(info['label'] + mark)} <span class='note'>(better: {better})</span></h3>"
            "<table class='pairs'><tr><th>A</th><th>B</th><th>mean A − B [95% CI]</th><th>n</th>"
            "<th>p (Wilcoxon)</th><th>p (Holm)</th><th>better</th><th>seeds agreeing</th></tr>"
            + "".join(body)
            + "</table>"
        )
    return "".join(parts)


def _runs(doc: dict[str, Any]) -> str:
    rows = []
    for r in doc.get("runs") or []:
        secs = r["train_seconds"]
        psnr, bic = r["best_val_psnr"], r["bicubic_val_psnr"]
        rows.append(
            f"<tr><td>{_e(r['run'])}</td><td>{_e(r['loss'])}</td><td>{r['seed']}</td>"
            f"<td>{r['frames']}</td><td>{r['steps']}</td>"
            f"<td>{'—' if secs is None else f'{secs:.0f}'}</td>"
            f"<td>{'—' if psnr is None else f'{psnr:.2f}'}</td>"
            f"<td>{'—' if bic is None else f'{bic:.2f}'}</td>"
            f"<td>{'RANDOM' if r['random_trunk'] else 'no'}</td><td>{_e(r['device'])}</td></tr>"
        )
    return (
        "<table><tr><th>run</th><th>loss</th><th>seed</th><th>frames</th><th>steps</th>"
        "<th>training s</th><th>best val PSNR</th><th>bicubic val PSNR</th>"
        "<th>random trunk</th><th>device</th></tr>" + "".join(rows) + "</table>"
    )


def _setup(doc: dict[str, Any]) -> str:
    t, cfg, test = doc["train"], doc["config"], doc["test"]
    m = t["model"]
    sf = doc.get("single_frame")
    timing = doc.get("timing") or {}
    items = [
        ("training config", f"{t['base_config']} + {', '.join(t['overrides']) or 'no overrides'}"),
        ("dataset", t["dataset"]),
        (
            "network",
            f"U-Net+GEU, {m['n_frames']} frames, x{m['scale']}, width {m['width']}, depth "
            f"{m['depth']}, {m['n_geu']} GEU, fusion {m['fusion']}"
            + (
                " (variants and frame counts below change this)"
                if cfg.get("variants") or cfg.get("frames")
                else ""
            ),
        ),
        (
            "budget per run",
            f"{t['epochs']} epochs x {t['steps_per_epoch']} steps x batch {t['batch_size']}, "
            f"Adam lr {t['optim']['lr']:g} ({t['optim']['schedule']})",
        ),
        ("losses", ", ".join(cfg["losses"])),
        *(
            [("variants", "; ".join(f"{k}: {', '.join(v)}" for k, v in cfg["variants"].items()))]
            if cfg.get("variants")
            else []
        ),
        *([("frames N", ", ".join(map(str, cfg["frames"])))] if cfg.get("frames") else []),
        ("seeds", ", ".join(map(str, cfg["seeds"]))),
        ("test set", f"{test['n_images']} images, {test['folder']}"),
        ("single-frame baseline", "not run" if not sf else f"{sf['loss']}: {sf['rule']}"),
        (
            "time spent",
            f"training {timing.get('training_s', 0) / 60:.1f} min, evaluation "
            f"{timing.get('evaluation_s', 0) / 60:.1f} min (all sessions)",
        ),
    ]
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"


READ = (
    "<p>Each trained row is the mean over its seeds; the bracket is a 95% bootstrap interval "
    "over test faces (test-set uncertainty; the seed-to-seed spread is shown by the dots of the "
    "bar charts and given in table1.json/csv). Two rows whose intervals overlap can still differ "
    "significantly in the paired tests (the same faces are compared), and a significant "
    "per-face difference that few seeds agree on may be training noise: look at both. Rows "
    "marked † did not train with the paper's perceptual loss (random trunk). Metric conventions "
    "(RGB SSIM, 8-bit MSE and PSNR per image, CPBD sharpness difference HR − output, dlib FFR) "
    "are those of <code>mfsr evaluate</code> (docs/metrics.md), repeated in table1.json.</p>"
)


def write_report(doc: dict[str, Any], files: dict[str, Path], path: Path) -> None:
    """Write the report page to ``path`` (``files``: the study's result files by name)."""
    rt = doc["random_trunk"]
    banners = "".join(
        f'<div class="banner">{_e(text)}</div>'
        for text in (rt["banner"], rt["lpips_banner"])
        if text
    )
    bars = "".join(_img(p) for n, p in files.items() if n.startswith("figures/bar_"))
    qual = files.get("figures/qualitative.png")
    links = " · ".join(
        f'<a href="{_e(n)}">{_e(n)}</a>'
        for n in files
        if not n.startswith("figures/") and n != "report.html"
    )
    shown = ", ".join(doc.get("qualitative_ids") or [])
    body = [
        f"<h1>Loss-function study <code>{_e(doc['study'])}</code></h1>",
        f"<p class='note'>mfsr {_e(doc['mfsr_version'])}, {_e(doc['created_utc'])}. "
        f"Files: {links}</p>",
        banners,
        "<h2>Setup</h2>",
        _setup(doc),
        "<h2>Table 1</h2>",
        _table1(doc),
        "<h3>How to read it</h3>",
        READ,
        "<h2>Metrics per method (Figure 3)</h2>",
        f'<div class="grid">{bars}</div>',
        *(
            ["<h2>Frame count</h2>", _img(files["figures/frames.png"], "wide")]
            if "figures/frames.png" in files
            else []
        ),
        "<h2>Qualitative comparison</h2>",
        f"<p class='note'>Test faces: {_e(shown)}.</p>" + (_img(qual, "wide full") if qual else ""),
        "<h2>Pairwise significance</h2>",
        f"<p class='note'>{_e(doc['statistics'])}</p>",
        _significance(doc),
        "<h2>Training curves</h2>",
        _img(files["figures/curves.png"], "wide"),
        "<h2>Runs</h2>",
        _runs(doc),
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>mfsr study {_e(doc['study'])}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    write_text_atomic(path, page)
