"""``mfsr model ...``: inspect model configurations (size and cost)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import typer

from mfsr.errors import MfsrError

app = typer.Typer(help="Inspect models: parameters and FLOPs.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Inspect models: parameters and FLOPs."""


def parse_assignments(items: list[str] | None, option: str = "--set") -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}``, values parsed as YAML scalars (``8``,
    ``true``, ``shared``). Raises MfsrError naming the option for an item without ``=``."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise MfsrError(f"{option}: expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise MfsrError(f"{option} {key.strip()}: cannot parse value {text!r}") from None
    return out


def _sweep_values(items: list[str] | None) -> list[dict[str, Any]]:
    """``["scale=2,4,8", "n_frames=1,7"]`` -> every combination as override dicts."""
    axes: dict[str, list[Any]] = {}
    for item in items or []:
        key = item.partition("=")[0].strip()
        values = item.partition("=")[2].split(",")
        axes[key] = [parse_assignments([f"{key}={v}"], "--sweep")[key] for v in values]
        if "=" not in item or not key:
            raise MfsrError(f"--sweep: expected KEY=V1,V2,..., got {item!r}")
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


@app.command("summary")
def summary(
    preset: str = typer.Option(None, help="Model preset name (paper, quick, tiny, bicubic, ...)."),
    config: Path = typer.Option(None, help="Model config YAML (instead of --preset)."),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a field: KEY=VALUE (repeatable), e.g. --set scale=4."
    ),
    sweep: list[str] = typer.Option(
        None,
        help="One table row per value: KEY=V1,V2,... (repeatable; rows = all combinations), "
        "e.g. --sweep scale=2,4,8 --sweep n_frames=1,7.",
    ),
    lr_size: int = typer.Option(32, help="LR input side in pixels for the FLOP count."),
) -> None:
    """Print trainable parameters and forward FLOPs per sample as a Markdown table."""
    if (preset is None) == (config is None):
        raise MfsrError("give exactly one of --preset NAME or --config YAML")
    if lr_size < 1:
        raise MfsrError(f"--lr-size must be >= 1, got {lr_size}")
    from mfsr.models import load_model_config
    from mfsr.models.summary import format_table, summarize

    overrides = parse_assignments(set_)
    rows = []
    for combo in _sweep_values(sweep):
        cfg = load_model_config(config if config is not None else preset, {**overrides, **combo})
        try:
            rows.append(summarize(cfg, lr_size))
        except ValueError as exc:  # e.g. an LR size the U-Net depth cannot divide
            raise MfsrError(f"--lr-size {lr_size}: {exc}") from None
    typer.echo(format_table(rows))
