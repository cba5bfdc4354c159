"""The ``mfsr`` command line: a thin shell over the library.

Heavy libraries (torch, dlib, OpenCV) are imported inside the commands, so ``mfsr --help``
stays instant. User errors (:class:`mfsr.errors.MfsrError`) are printed as one line on stderr
with exit status 2, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from mfsr import __version__
from mfsr.cli.data import app as data_app

app = typer.Typer(
    name="mfsr",
    help="Multi-frame face super-resolution: datasets, models, training, evaluation, study.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mfsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Multi-frame face super-resolution toolkit."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning MfsrError into a one-line message."""
    from mfsr.errors import MfsrError

    try:
        app(args=argv, standalone_mode=False)
    except MfsrError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted; rerun the same command to resume", fg="yellow", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors carry their own formatting
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
