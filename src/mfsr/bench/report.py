"""``bench.md``: the measurements of one ``mfsr bench`` run as Markdown tables."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(doc: dict[str, Any]) -> str:
    """The whole ``bench.md``: header, training step, data feed, inference, metrics."""
    sections = (_header, _training_step, _data_feed, _inference, _metrics)
    return "\n".join(line for section in sections for line in section(doc))


def _header(doc: dict[str, Any]) -> list[str]:
    m, model = doc["machine"], doc["model"]
    h, w = doc["lr_size"]
    return [
        f"# mfsr bench ({'quick' if doc['quick'] else 'full'})",
        "",
        f"Config `{doc['config']}` {' '.join(f'`--set {s}`' for s in doc['sets'])}: "
        f"x{model['scale']}, {model['n_frames']} frames of {w}x{h}, width {model['width']}, "
        f"depth {model['depth']}, batch {doc['batch_size']}, loss `{doc['loss']}`; "
        f"amp {doc['amp']}, channels_last {doc['channels_last']}, "
        f"compile {doc.get('compile_mode') or doc['compile']}.",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), device {m['device']}, torch {m['torch']} "
        f"({m['torch_threads']} threads), load before {m['loadavg_before'][0]:.2f}. "
        f"Took {doc['seconds']:.0f} s; peak RSS {doc['peak_rss_mb']:.0f} MB.",
        "",
    ]


def _training_step(doc: dict[str, Any]) -> list[str]:
    lines = [
        "## Training step (forward + loss + backward + Adam, one batch on the device)",
        "",
        "| loss | ms/step | samples/s | GFLOP/step | TFLOP/s | MFU (bf16 peak) | GPU peak MB "
        "| random trunk | projected run (config budget) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["bare_step"]:
        mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        hours = doc["projected_train_s"][r["loss"]] / 3600
        lines.append(
            f"| {r['loss']} | {_f(r['ms'])} | {_f(r['samples_per_s'])} | "
            f"{_f(r['flops_per_step'] / 1e9)} | {_f(r['tflops'], 3)} | {mfu} | "
            f"{_f(r['cuda_peak_mem_mb'], 0)} | {r['random_trunk']} | {hours:.2f} h |"
        )
    val = doc["validation"]
    lines += [
        "",
        f"Validation pass (loss `{doc['loss']}`, PSNR, SSIM; {val['faces_timed']} faces timed, "
        f"batch {val['batch']}): {val['ms_per_face']:.2f} ms per face; {val['val_faces']} val "
        f"faces every epoch: {val['projected_per_run_s'] / 60:.1f} min per run.",
    ]
    if "projected_study_train_s" in doc:
        hours = doc["projected_study_train_s"] / 3600
        lines += [
            "",
            f"Projected training time of a study with this config (4 losses + single-frame, "
            f"3 seeds, one device, runs one after another): {hours:.2f} h, plus "
            f"{doc['projected_study_validation_s'] / 3600:.2f} h of validation; without data "
            "synthesis and evaluation.",
        ]
    return lines


def _data_feed(doc: dict[str, Any]) -> list[str]:
    bare_rounds = ", ".join(f"{r['bare_ms']:.1f}" for r in doc["loop_rounds"])
    lines = [
        "",
        f"## Data feed and loop (loss `{doc['loss']}`)",
        "",
        f"Bare step per round: {bare_rounds} ms; loop and bare step alternate in "
        f"{len(doc['loop_rounds'])} rounds, `loop_overhead` is the median of the per-round "
        f"ratios. Making one batch in the main process: {doc['data_ms_per_batch']:.1f} ms.",
        *_synthesis_line(doc),
        "",
        "| loader workers | feed samples/s | feed_ratio | loop step ms | loop_overhead |",
        "|---|---|---|---|---|",
    ]
    loops = {r["workers"]: r for r in doc["loop"]}
    for f in doc["feed"]:
        loop = loops.get(f["workers"], {})
        lines.append(
            f"| {f['workers']} | {_f(f['samples_per_s'])} | {_f(f['feed_ratio'], 2)} | "
            f"{_f(loop.get('loop_ms'))} | {_f(loop.get('loop_overhead'), 3)} |"
        )
    return lines


def _inference(doc: dict[str, Any]) -> list[str]:
    lines = ["", "## Inference (eval mode, per sequence)", ""]
    lines += ["| batch | ms/sequence | sequences/s | GPU peak MB |", "|---|---|---|---|"]
    for name, r in doc["inference"].items():
        lines.append(
            f"| {name.removeprefix('batch_')} | {_f(r['ms_per_sequence'], 2)} | "
            f"{_f(r['sequences_per_s'])} | {_f(r['cuda_peak_mem_mb'], 0)} |"
        )
    return lines


def _metrics(doc: dict[str, Any]) -> list[str]:
    ev = doc["metrics"]
    return [
        "",
        f"## Evaluation metrics ({ev['images']} images of {ev['size'][1]}x{ev['size'][0]}, "
        "one process)",
        "",
        "| metric | ms/image |",
        "|---|---|",
        *(f"| {k} | {_f(v, 2)} |" for k, v in ev["ms_per_image"].items()),
        f"| **all** | {_f(ev['total_ms_per_image'], 2)} |",
        "",
        f"753 faces in one process: about {ev['projected_753_s_one_process']:.0f} s "
        "(`mfsr evaluate` splits the NumPy/dlib metrics over `--workers` processes and caches "
        "the HR descriptors).",
        "",
    ]


def _synthesis_line(doc: dict[str, Any]) -> list[str]:
    """With ``data.synthesis: device``: what the device half costs per batch."""
    synth = doc.get("device_synthesis")
    if synth is None:
        return []
    return [
        f"Synthesis on the device (`data.synthesis: device`; the workers only cut the photo): "
        f"{synth['ms']:.2f} ms per batch, {synth['samples_per_s']:.0f} samples/s, "
        f"{synth['ratio']:.2f}x the bare step's rate; the loop step includes it."
    ]
