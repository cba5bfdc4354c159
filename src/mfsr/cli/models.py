"""``mfsr models list``: the models shipped with mfsr and the trained runs in a folder."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Shipped and trained models.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Shipped and trained models."""


def _lines(name: str, file: Path) -> list[str]:
    """Two lines for one checkpoint: name, geometry, fusion, loss; then its sha256 and file."""
    from mfsr.train.checkpoint import read_checkpoint
    from mfsr.weights import file_sha256

    _, meta = read_checkpoint(file)
    cfg = meta.get("model_config") or {}
    train = meta.get("train_config") or {}
    what = f"x{cfg.get('scale')}, {cfg.get('n_frames')} frames, {cfg.get('fusion')} fusion"
    head = f"{name}: {what}, loss {train.get('loss', '?')}"
    return [head, f"    sha256 {file_sha256(file)}  {file}"]


@app.command("list")
def list_models(
    runs: Path = typer.Option(Path("runs"), help="Folder of trained run folders to list too."),
) -> None:
    """The shipped models (the first is the default of mfsr enhance) and the trained runs
    under --runs, each with its checkpoint's sha256."""
    from mfsr.errors import MfsrError
    from mfsr.shipped import DEFAULT, SHIPPED, shipped_path
    from mfsr.train.checkpoint import resolve_checkpoint

    if runs.exists() and not runs.is_dir():
        raise MfsrError(f"--runs {runs}: not a folder")
    lines = []
    for name in sorted(SHIPPED, key=lambda n: n != DEFAULT):
        label = f"{name} (shipped{', default' if name == DEFAULT else ''})"
        lines += _lines(label, shipped_path(name))
    for run in sorted(runs.iterdir()) if runs.is_dir() else []:
        try:
            lines += _lines(str(run), resolve_checkpoint(run))
        except MfsrError as exc:
            lines.append(f"skipped {run}: {exc}")
    if not runs.is_dir():
        lines.append(f"no trained runs: {runs} does not exist (--runs)")
    typer.echo("\n".join(lines))
