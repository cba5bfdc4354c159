"""The command line: instant help without heavy imports, clean usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "dlib", "cv2", "lpips", "torchvision")


def test_importing_the_cli_does_not_import_heavy_libraries():
    code = f"import sys, mfsr.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "mfsr", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("data", "model", "weights", "train", "evaluate", "enhance", "study"):
        assert command in out.stdout


def test_usage_errors_exit_2_without_traceback():
    for args in (
        ["data", "build", "--bogus"],
        ["data", "build", "--scale", "x"],
        ["serve", "--port", "99999"],  # once an OverflowError from bind()
        ["serve", "--port", "-1"],
    ):
        out = subprocess.run([sys.executable, "-m", "mfsr", *args], capture_output=True, text=True)
        assert out.returncode == 2
        assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "mfsr", "serve", "--port", "99999"], capture_output=True, text=True
    )
    assert "--port" in out.stderr and "65535" in out.stderr


def test_library_errors_name_arguments_and_the_cli_names_flags():
    from mfsr.cli import flags_of
    from mfsr.enhance.source import register_window
    from mfsr.errors import BadArgument, MfsrError

    exc = BadArgument("`batch_size` must be >= 1, got 0; or use `every_frame`")
    assert isinstance(exc, MfsrError) and isinstance(exc, ValueError)
    assert str(exc) == "`batch_size` must be >= 1, got 0; or use `every_frame`"
    enhance = flags_of(["enhance", "--video", "x.mp4"])
    assert exc.with_flags(enhance) == "--batch-size must be >= 1, got 0; or use --all"
    build = flags_of(["data", "build"])
    assert build["n_frames"] == "--frames" and build["max_upscale"] == "--max-upscale"
    # a name no flag of the command sets (a config field) is shown bare, not as a made-up flag
    limit = BadArgument("`max_upscale` must be a positive finite number, got inf")
    assert limit.with_flags(flags_of(["train"])).startswith("max_upscale must be")
    with pytest.raises(BadArgument, match=r"^`register` must be one of integer, full, none"):
        register_window([], 8, "sideways")  # the library's own words, not a flag


def test_serve_refuses_a_workdir_that_is_a_file(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("x")
    cmd = [sys.executable, "-m", "mfsr", "serve", "--port", "0", "--workdir", str(file)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"error: --workdir {file}: not a folder"
