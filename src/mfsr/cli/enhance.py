"""``mfsr enhance``: a real clip or a few cropped frames -> enhanced faces (no ground truth).

See ``docs/enhance.md``. Registered in :mod:`mfsr.cli` with ``app.command("enhance")(enhance)``.
"""

from __future__ import annotations

from pathlib import Path

import typer


def enhance(
    files: list[Path] = typer.Argument(
        None, help="With --frames: the cropped frame images, in time order.", show_default=False
    ),
    video: Path = typer.Option(None, help="Video clip to enhance the face of."),
    frames: bool = typer.Option(
        False,
        "--frames",
        help="Enhance already-cropped frames given as FILES (--frames f1.png ... fN.png).",
    ),
    model: str = typer.Option(
        None,
        help="Trained model: a run folder (best, else last checkpoint) or .safetensors "
        "(default: the shipped model; `mfsr models list`).",
    ),
    baseline: str = typer.Option(
        None, help="Use a baseline instead of a trained model: 'classical' or 'bicubic'."
    ),
    out: Path = typer.Option(..., help="Output folder (faces, side-by-sides, enhance.json)."),
    scale: int = typer.Option(
        None, help="Scale (baselines: default 4; with --model: checked against the checkpoint)."
    ),
    n_frames: int = typer.Option(
        None,
        "--n-frames",
        help="Frames per window (baselines: default 7; with --model: checked against it).",
    ),
    lr_size: int = typer.Option(
        None,
        help="LR crop side in px fed to the model (default: the size the checkpoint was "
        "trained on, else 32).",
    ),
    every: int = typer.Option(
        None, help="Start a window every K frames (default: N, windows do not overlap)."
    ),
    at: list[float] = typer.Option(
        None, help="Enhance the window centred at this time in seconds (repeatable)."
    ),
    all_: bool = typer.Option(False, "--all", help="Every possible window (stride 1)."),
    batch_size: int = typer.Option(
        None, help="Windows per model call, bounds memory (default: 4 on CPU, 32 on a GPU)."
    ),
    device: str = typer.Option("auto", help="'auto' (GPU if available), 'cpu' or 'cuda'."),
    register: str = typer.Option(
        "integer",
        help="Video: align frames to the reference by re-rendering their crops: 'integer' "
        "(whole LR pixels; keeps the sub-pixel offsets multi-frame SR uses), 'full' or 'none'.",
    ),
    downscale: float = typer.Option(
        1.0, help="Shrink frames by this factor first (simulate low-resolution footage)."
    ),
    max_frames: int = typer.Option(None, help="Read at most this many frames of the clip."),
    upsample: int = typer.Option(
        None,
        help="dlib detector upsampling, 0-3 (faces from about 80, 40, 20, 10 px; each level 4x "
        "slower); default: 0, 1, 2 tried in turn as needed.",
    ),
    threads: int = typer.Option(
        None,
        help="CPU threads for torch (default: torch's choice; 1 is often faster for the "
        "classical baseline and on a busy machine).",
    ),
    flip_ensemble: bool = typer.Option(
        False,
        "--flip-ensemble",
        help="Average each face with the model's output for the mirrored frames (2x time).",
    ),
    overwrite: bool = typer.Option(False, help="Replace enhance results already in --out."),
) -> None:
    """Enhance the face in a real video clip (or in a few cropped frames), without ground truth."""
    from mfsr.errors import MfsrError

    if (video is None) == (not frames):
        raise MfsrError("give either --video CLIP or --frames F1.png ... FN.png (one of them)")
    if frames and not files:
        raise MfsrError("--frames: give the frame images after it (--frames f1.png f2.png ...)")
    if files and not frames:
        raise MfsrError(f"unexpected argument {files[0]} (did you mean --frames {files[0]} ...?)")

    if threads is not None and threads < 1:
        raise MfsrError(f"--threads must be >= 1, got {threads}")

    import torch

    from mfsr.cli.console import console, progress_bars
    from mfsr.enhance import enhance_frames, enhance_video

    if threads is not None:
        torch.set_num_threads(threads)

    def warn(message: str) -> None:
        console.print(f"[yellow]warning:[/] {message}", highlight=False)

    enhancer = _enhancer(model, baseline, n_frames, scale, lr_size, device, flip_ensemble, warn)
    if frames:
        doc = enhance_frames(files, enhancer, out, overwrite=overwrite, warn=warn)
    else:
        with progress_bars() as add:
            bars: dict[str, object] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in bars:
                    bars[stage] = add("tracking" if stage == "track" else "enhancing")
                bars[stage](done, total)  # type: ignore[operator]

            doc = enhance_video(
                video,
                enhancer,
                out,
                every=every,
                at=at or None,
                every_frame=all_,
                downscale=downscale,
                max_frames=max_frames,
                batch_size=batch_size,
                register=register,
                upsample=upsample,
                overwrite=overwrite,
                warn=warn,
                progress=progress,
            )
    n = len(doc["windows"])
    rate = (doc.get("faces_per_s") or {}).get("end_to_end")
    speed = f" ({rate:.1f} faces/s end to end)" if rate else ""
    console.print(f"[green]done:[/] {n} enhanced face(s) in {out}{speed}", highlight=False)


def _enhancer(model, baseline, n_frames, scale, lr_size, device, flip_ensemble, warn):
    """The model to enhance with (the shipped one when neither is given), said on one line."""
    from mfsr.cli.console import console
    from mfsr.enhance import load_enhancer

    if model is None and baseline is None:  # the model that comes with mfsr (docs/models.md)
        from mfsr.shipped import DEFAULT, shipped_path

        model = shipped_path(DEFAULT)
        console.print(
            f"model: the shipped default, {DEFAULT} (docs/models.md); --model or --baseline "
            "for another",
            highlight=False,
        )
    enhancer = load_enhancer(
        model,
        baseline,
        n_frames=n_frames,
        scale=scale,
        lr_size=lr_size,
        device=device,
        flip_ensemble=flip_ensemble,
        warn=warn,
    )
    what = f"{enhancer.label}: {enhancer.n_frames} frames, x{enhancer.scale}, "
    what += f"{enhancer.lr_size} -> {enhancer.hr_size} px on {enhancer.device}"
    console.print(what, highlight=False)
    return enhancer
