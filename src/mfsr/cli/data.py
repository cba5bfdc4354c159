"""``mfsr data ...``: build sequence datasets from face photos or from video."""

from __future__ import annotations

from pathlib import Path

import typer

from mfsr.cli.options import data_root_option, use_data_root

app = typer.Typer(help="Build multi-frame sequence datasets.", no_args_is_help=True)


def _parse_counts(text: str | None) -> tuple[int, int, int] | None:
    from mfsr.errors import MfsrError

    if text is None:
        return None
    parts = text.split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise MfsrError(f"--counts: expected three integers TRAIN,VAL,TEST, got {text!r}")
    return values  # type: ignore[return-value]


@app.command("build")
def build(
    source: str = typer.Option(
        ...,
        help="Folder of face photos (LFW layout: one folder per identity), or a known dataset "
        "(lfw: found under --data-root, ./data or ../shared/data; see `mfsr data fetch`).",
    ),
    out: Path = typer.Option(..., help="Output dataset folder."),
    scale: int = typer.Option(8, help="Scale factor: 2, 4 or 8."),
    frames: int = typer.Option(7, help="Frames per sequence (N)."),
    hr_size: int = typer.Option(256, help="HR target size in pixels (LR size = HR size / scale)."),
    seed: int = typer.Option(0, help="Seed for splits and degradations."),
    degradation: str = typer.Option("default", help="Degradation preset name or YAML path."),
    crop: str = typer.Option(
        "whole", help="'whole': whole image (centred square); 'face': centred face crop."
    ),
    face_size: int = typer.Option(
        128, help="Side of the centred face crop in source pixels (--crop face)."
    ),
    counts: str = typer.Option(
        None,
        help="Exact split sizes TRAIN,VAL,TEST (e.g. 2504,837,753); "
        "default: all photos in the paper's 2504:837:753 proportions.",
    ),
    max_per_identity: int = typer.Option(None, help="Use at most this many photos per identity."),
    limit: int = typer.Option(None, help="Consider only the first N files (sorted by path)."),
    splits: str = typer.Option("train,val,test", help="Which splits to write as frozen samples."),
    max_upscale: float = typer.Option(
        1.25, help="Skip photos whose crop would be enlarged more than this to reach the HR size."
    ),
    workers: int = typer.Option(
        1, help="Processes writing samples (output is identical for any number)."
    ),
    overwrite: bool = typer.Option(False, help="Replace a dataset already in --out."),
    data_root: Path = data_root_option(),
) -> None:
    """Build identity-disjoint train/val/test sequence sets from face photos."""
    from mfsr.cli.console import console, print_report, progress_bars
    from mfsr.data.build import BuildOptions, build_dataset
    from mfsr.data.degrade import load_degradation
    from mfsr.data.fetch import resolve_source
    from mfsr.errors import MfsrError

    use_data_root(data_root)

    if crop not in ("whole", "face"):
        raise MfsrError(f"--crop must be 'whole' or 'face', got {crop!r}")
    opts = BuildOptions(
        source=resolve_source(source),
        out=out,
        degradation=load_degradation(degradation),
        scale=scale,
        n_frames=frames,
        hr_size=hr_size,
        seed=seed,
        crop=crop,
        face_size=face_size,  # type: ignore[arg-type]
        counts=_parse_counts(counts),
        max_per_identity=max_per_identity,
        limit=limit,
        write_splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
        max_upscale=max_upscale,
        overwrite=overwrite,
        workers=workers,
    )
    opts.validate()
    with progress_bars() as add:
        report = build_dataset(
            opts, scan_progress=add("scanning photos"), build_progress=add("writing samples")
        )
    print_report(report, f"mfsr data build -> {out}")
    if report.total == 0:
        raise MfsrError(f"{out}: no sample could be written")
    console.print(f"[green]done:[/] {report.total} samples in {out}")


@app.command("from-video")
def from_video(
    video: list[Path] = typer.Option(..., help="Video clip(s); repeat the option for several."),
    out: Path = typer.Option(..., help="Output dataset folder."),
    mode: str = typer.Option(
        "eval", help="'eval': HR + degraded LR frames; 'lr-only': LR frames for enhancement."
    ),
    frames: int = typer.Option(7, help="Frames per sequence (N)."),
    scale: int = typer.Option(8, help="Scale factor: 2, 4 or 8."),
    hr_size: int = typer.Option(256, help="HR size in pixels (LR size = HR size / scale)."),
    stride: int = typer.Option(
        None, help="Start a sequence every STRIDE frames (default: N, no overlap)."
    ),
    degradation: str = typer.Option(
        "default", help="Degradation preset (eval mode; no synthetic motion)."
    ),
    seed: int = typer.Option(0, help="Seed for the degradations."),
    split: str = typer.Option("test", help="Split folder to write into."),
    max_frames: int = typer.Option(None, help="Read at most this many frames of each clip."),
    enlarge: float = typer.Option(2.4, help="Crop side / face box size (2.4: LFW's framing)."),
    border: str = typer.Option("black", help="Crop parts outside the frame: 'black' or 'mirror'."),
) -> None:
    """Track the face in real video and write sequences of N consecutive frames."""
    from mfsr.cli.console import console, print_report, progress_bars
    from mfsr.data.degrade import load_degradation
    from mfsr.data.from_video import build_from_video
    from mfsr.data.report import BuildReport
    from mfsr.data.sample import safe_id
    from mfsr.errors import MfsrError

    stems: dict[str, Path] = {}
    for clip in video:  # sample ids are <clip stem>_f<frame>: refuse collisions before any work
        first = stems.setdefault(safe_id(clip.stem), clip)
        if first != clip:
            raise MfsrError(
                f"--video {clip} and {first}: their sample ids would collide (both "
                f"{safe_id(clip.stem)}_f...); rename one, or build them into separate folders"
            )
    cfg = load_degradation(degradation)
    report = BuildReport()
    with progress_bars() as add:
        for clip in video:
            build_from_video(
                clip,
                out,
                mode=mode,
                n_frames=frames,
                scale=scale,
                hr_size=hr_size,
                stride=stride,
                degradation=cfg,
                seed=seed,
                split=split,
                max_frames=max_frames,
                enlarge=enlarge,
                border=border,
                report=report,
                progress=add(clip.name),
            )
    print_report(report, f"mfsr data from-video -> {out}")
    if report.total == 0:
        raise MfsrError(f"no sequence could be made from {len(video)} video(s)")
    console.print(f"[green]done:[/] {report.total} sequences in {out}")


@app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="Dataset to download: lfw."),
    to: Path = typer.Option(
        None, help="Data root to put it under (default: $MFSR_DATA, else ./data)."
    ),
    url: str = typer.Option(None, help="Download from this mirror instead of the official URLs."),
    sha256: str = typer.Option(
        None, help="Check the archive against this sha256 instead of the published MD5."
    ),
    archive: Path = typer.Option(
        None, help="Use this already downloaded archive instead of downloading."
    ),
) -> None:
    """Download a public dataset (needs network; the only command that does), check it
    against its published digest and extract it where configs naming it find it. A cut
    download resumes when the command is run again."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from mfsr.cli.console import console, progress_bars
    from mfsr.data.fetch import KNOWN, fetch_dataset

    if name in KNOWN:
        console.print(f"{name}: {KNOWN[name].about}", markup=False, highlight=False, soft_wrap=True)
    columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
    with progress_bars(*columns) as add:
        update = add(f"downloading {name}")
        folder, fetched = fetch_dataset(
            name,
            to,
            url=url,
            sha256=sha256,
            archive=archive,
            progress=lambda done, total: update(done, total or None),
        )
    state = "done" if fetched else "already there"
    console.print(f"[green]{state}:[/] {folder}", highlight=False, soft_wrap=True)
