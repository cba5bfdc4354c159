"""Helpers shared by several test modules; test modules import from here, never from each other.

Paths to the real data (``../shared/data``) and :func:`require`, the in-process CLI runner and
its one-line-error checks, a tiny training config, a tiny checkpoint, and real LFW sequences.
Topic helpers stay beside their tests (``degrade_helpers``, ``serve_helpers``,
``hostile_corpus``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mfsr.config import to_dict
from mfsr.data.dataset import stack_frames, to_tensor
from mfsr.data.degrade import Crop, load_degradation, synthesize_sequence
from mfsr.data.images import read_rgb
from mfsr.models import ModelConfig, build_model
from mfsr.train.checkpoint import read_checkpoint, save_checkpoint, split_prefix

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LFW = SHARED / "lfw" / "images_deepfunneled"
VIDEOS = SHARED / "video-voxceleb2"
CLIP = VIDEOS / "Audio_Source_00086.mp4"  # 224 px, face box ~150 px
LFW_PHOTO = LFW / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"


def require(path: Path) -> Path:
    """``path``, or skip the test with the reason when the shared data is absent."""
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (CI always has ../shared/data)")
    return path


def refuse_download(*args, **kwargs):
    raise AssertionError("tests must not touch the network")


# -- the command line, in-process ---------------------------------------------------------------


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


# -- tiny models and runs -----------------------------------------------------------------------


def overrides(data: Path, out: Path, *extra: str) -> list[str]:
    """``--set`` pairs for a seconds-long training run of ``smoke`` on dataset ``data``."""
    return [
        f"data.dataset={data}",
        f"out_dir={out}",
        "data.build=null",
        "data.val_limit=4",
        "model.width=8",
        "model.depth=2",
        "model.n_geu=1",
        "model.scale=4",
        "model.n_frames=3",
        "epochs=3",
        "steps_per_epoch=4",
        "batch_size=2",
        *extra,
    ]


def model_tensors(run: Path) -> dict[str, torch.Tensor]:
    """The model's tensors in ``run``'s last checkpoint."""
    tensors, _ = read_checkpoint(run / "checkpoints" / "last.safetensors")
    return split_prefix(tensors, "model")


def tiny_checkpoint(path: Path, n_frames: int, scale: int = 4) -> Path:
    """An untrained U-Net+GEU of width 4 saved as a checkpoint at ``path`` (seed 0)."""
    torch.manual_seed(0)
    cfg = ModelConfig(name="unet_geu", n_frames=n_frames, scale=scale, width=4, depth=2, n_geu=1)
    model = build_model(cfg)
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(path, tensors, {"model_config": to_dict(cfg)})
    return path


# -- real faces ---------------------------------------------------------------------------------


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(B, C, H, W)`` tensors in [0, 1]."""
    mse = ((pred - target) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def lfw_sequences(
    root: Path, count: int, scale: int, hr_size: int, n_frames: int, preset: str, face: int | None
) -> tuple[torch.Tensor, torch.Tensor, list]:
    """``count`` real LFW faces -> frames (B, N, 3, h, w), HR (B, 3, H, W), drawn params."""
    people = sorted(p for p in root.iterdir() if p.is_dir())[::701][:count]
    cfg = load_degradation(preset)
    frames, hrs, params = [], [], []
    for i, person in enumerate(people):
        image = read_rgb(sorted(person.iterdir())[0])
        crop = Crop.centred(image.shape[1], image.shape[0], face)
        rng = np.random.default_rng([7, i])
        lr, hr, p = synthesize_sequence(image, crop, hr_size, scale, n_frames, cfg, rng)
        frames.append(stack_frames(lr))
        hrs.append(to_tensor(hr))
        params.append(p)
    return torch.stack(frames), torch.stack(hrs), params
