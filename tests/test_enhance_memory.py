"""mfsr enhance within the machine's memory: measured window memory, a batch that fits or a
one-line refusal before the slow tracking, and a halved batch when an allocation fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mfsr.enhance.memory as memory
from helpers import CLIP, tiny_checkpoint
from mfsr.enhance import enhance_frames, enhance_video, load_enhancer
from mfsr.enhance.memory import USABLE, BatchCalls, fit_batch, memory_model, window_peak_bytes
from mfsr.enhance.model import Enhancer
from mfsr.errors import MfsrError
from mfsr.models import ModelConfig, build_model

CPU = torch.device("cpu")


def unet_enhancer(lr_size: int, width: int = 16) -> Enhancer:
    torch.manual_seed(0)
    cfg = ModelConfig(name="unet_geu", n_frames=3, scale=4, width=width, depth=2, n_geu=1)
    return Enhancer(build_model(cfg).eval(), "unet", 3, 4, lr_size, 2, CPU)


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="peak memory is read from Linux's /proc"
)
def test_window_memory_is_measured_and_predicted():
    """From windows of 64 and 128 px, the memory of a 256 px window (16x the pixels of the
    small probe) is predicted erring high: 1.2-1.7x, more where a larger model ran before in
    the same process (benchmarks/enhance_memory.py; a slope fitted between the probes once
    erred low in CI, 0.76x)."""
    enhancer = unet_enhancer(64)
    predicted = memory_model(enhancer) * 256**2
    measured = min(window_peak_bytes(enhancer, 256) for _ in range(2))
    assert measured > 3 * (4 * 256) ** 2 * 4  # more than the float32 output image
    assert 0.9 < predicted / measured < 2.5, (predicted, measured)


def limited(monkeypatch, available: float, per_window_256: float = 4e8) -> None:
    """This much memory available, and the model's measured memory: nothing fixed, and this
    much for one 256 px window."""
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(available))
    monkeypatch.setattr(memory, "memory_model", lambda e: per_window_256 / 256**2)


def test_the_batch_is_lowered_to_what_fits_or_refused(monkeypatch):
    enhancer = unet_enhancer(256)
    warnings: list[str] = []
    limited(monkeypatch, 1e15)
    assert fit_batch(enhancer, 4, warnings.append) == 4 and not warnings
    limited(monkeypatch, 2.5 * 4e8 / USABLE)
    assert fit_batch(enhancer, 4, warnings.append) == 2
    assert "about 0.4 GB per window at --lr-size 256" in warnings[0]
    assert "2 window(s) per model call instead of 4" in warnings[0]
    limited(monkeypatch, 0.5 * 4e8 / USABLE)  # half a window: 256 * sqrt(0.5) = 181 px
    with pytest.raises(MfsrError, match=r"not enough memory.*smaller --lr-size \(180 would fit\)"):
        fit_batch(enhancer, 4)
    limited(monkeypatch, 1000)
    with pytest.raises(MfsrError, match=r"smaller --lr-size$") as refused:
        fit_batch(enhancer, 1)
    assert "would fit" not in str(refused.value)  # nothing does
    assert fit_batch(unet_enhancer(128), 4) == 4  # small windows are not checked


def test_a_refusal_comes_before_the_tracking(monkeypatch, tmp_path):
    if not CLIP.exists():
        pytest.skip(f"shared data not found at {CLIP} (CI always has ../shared/data)")
    import mfsr.enhance.run as run

    def no_tracking(*args, **kwargs):
        raise AssertionError("tracked a clip that cannot be enhanced")

    monkeypatch.setattr(run, "track_face", no_tracking)
    enhancer = load_enhancer(tiny_checkpoint(tmp_path / "t.safetensors", 3), lr_size=256)
    limited(monkeypatch, 1000)
    with pytest.raises(MfsrError, match="not enough memory"):
        enhance_video(CLIP, enhancer, tmp_path / "out")
    with pytest.raises(MfsrError, match="not enough memory"):
        enhance_frames([tmp_path / "unread.png"], enhancer, tmp_path / "out2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_the_fitted_batch_is_used_and_recorded(monkeypatch, tmp_path):
    if not CLIP.exists():
        pytest.skip(f"shared data not found at {CLIP} (CI always has ../shared/data)")
    torch.set_num_threads(1)
    enhancer = load_enhancer(tiny_checkpoint(tmp_path / "t.safetensors", 3), lr_size=256)
    limited(monkeypatch, 1.5 * 4e8 / USABLE)
    doc = enhance_video(CLIP, enhancer, tmp_path / "out", max_frames=9)
    assert doc["batch_size"] == 1 and len(doc["windows"]) == 3
    assert any("1 window(s) per model call instead of 4" in w for w in doc["warnings"])
    saved = json.loads((tmp_path / "out" / "enhance.json").read_text())
    assert saved["batch_size"] == 1


class FailsAbove(nn.Module):
    """Upsamples the reference frame; asks the CPU allocator for 1 PB (a real allocation
    failure) when given more than ``limit`` windows at once."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            torch.empty(2**50, dtype=torch.uint8)
        ref = x[:, x.shape[1] // 2]
        return nn.functional.interpolate(ref, scale_factor=4, mode="bilinear")


def test_an_allocation_failure_halves_the_batch():
    windows = np.random.default_rng(0).integers(0, 256, (5, 3, 16, 16, 3), np.uint8)
    expected = Enhancer(FailsAbove(5), "ok", 3, 4, 16, 1, CPU)(windows)
    warnings: list[str] = []
    calls = BatchCalls(Enhancer(FailsAbove(1), "f", 3, 4, 16, 1, CPU), 4, warnings.append)
    assert np.array_equal(calls(windows), expected)
    assert calls.batch == 1
    assert warnings == [
        "out of memory for 4 windows at once: 2 per model call",
        "out of memory for 2 windows at once: 1 per model call",
    ]
    never = BatchCalls(Enhancer(FailsAbove(0), "f", 3, 4, 16, 1, CPU), 2)
    with pytest.raises(MfsrError, match=r"out of memory for one window at --lr-size 16 \(.*"):
        never(windows)
    with pytest.raises(RuntimeError, match="permute"):  # other errors pass through
        BatchCalls(Enhancer(nn.Identity(), "i", 3, 4, 16, 1, CPU), 2)(np.zeros((1, 3, 16, 16)))
