"""``mfsr weights ...``: download and inspect the pretrained trunks of the perceptual losses."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Pretrained ImageNet trunks for the perceptual losses (vgg19, alexnet, vgg16).",
    no_args_is_help=True,
)


@app.command("fetch")
def fetch(
    names: list[str] = typer.Argument(
        None, help="Trunks to download: vgg19, alexnet, vgg16 (default: all).", show_default=False
    ),
    progress: bool = typer.Option(True, help="Show a download progress bar."),
) -> None:
    """Download trunks into torchvision's cache ($TORCH_HOME/hub/checkpoints), checksum-verified."""
    from rich.console import Console

    from mfsr.weights import fetch as fetch_trunks

    console = Console()
    for info in fetch_trunks(names or None, progress=progress):
        sha = info.sha256 or ""
        console.print(
            f"{info.name}: {info.path} (sha256 {sha[:16]}..., official)"
            if info.official
            else f"{info.name}: {info.path} (sha256 {sha[:16]}..., NOT official)",
            markup=False,
            highlight=False,
        )


@app.command("status")
def status() -> None:
    """Which trunks are cached, their sha256, and whether they are the official files."""
    from rich.console import Console
    from rich.table import Table

    from mfsr.weights import TRUNKS, cache_dir, cache_path, inspect_file

    table = Table(title=f"pretrained trunks in {cache_dir()}")
    for column in ("trunk", "used by", "file", "cached", "sha256", "official"):
        # names and digests are copied by hand: folded on a narrow terminal, never cut with "…"
        table.add_column(column, overflow="fold" if column in ("file", "sha256") else "ellipsis")
    missing = []
    for name, spec in TRUNKS.items():
        info = inspect_file(name)
        if info is None:
            missing.append(name)
            table.add_row(name, spec.used_by, cache_path(name).name, "no", "-", "-")
        else:
            official = "yes" if info.official else "NO"
            table.add_row(name, spec.used_by, cache_path(name).name, "yes", info.sha256, official)
    console = Console()
    console.print(table)
    if missing:
        console.print(
            f"missing: {', '.join(missing)}; run `mfsr weights fetch {' '.join(missing)}` "
            f"(needs network) or copy {', '.join(cache_path(n).name for n in missing)} into "
            f"{cache_dir()}",
            markup=False,
            highlight=False,
            soft_wrap=True,  # one line however narrow the terminal: names stay whole
        )
