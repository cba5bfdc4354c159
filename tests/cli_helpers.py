"""Helpers shared by the CLI tests: run ``mfsr`` in-process, check its one-line errors."""

from __future__ import annotations

from pathlib import Path


def run(capsys, *args: object) -> tuple[int, str]:
    """Run ``mfsr args...`` in-process; (exit status, stdout + stderr)."""
    from mfsr.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out + out.err


def assert_one_line_error(code: int, output: str, *fragments: str) -> str:
    """Exit status 2, no traceback, exactly one ``error:`` line holding every fragment."""
    assert code == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def assert_no_complete_output(out: Path) -> None:
    """An error leaves no output folder, or one without results."""
    leftovers = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not leftovers, f"partial output after an error: {leftovers[:5]}"
