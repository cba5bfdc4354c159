"""Models: shapes, gradients, configs, overfitting real faces, classical fusion, determinism."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from helpers import lfw_sequences, psnr
from mfsr.cli.model import app as model_app
from mfsr.config import from_dict
from mfsr.errors import MfsrError
from mfsr.models import MODELS, ModelConfig, build_model, load_model_config
from mfsr.models.baselines import Bicubic, ClassicalFusion, estimate_shifts
from mfsr.models.summary import format_table, summarize

SMALL = dict(width=8, depth=2, n_geu=1)  # a unet_geu small enough for CPU tests


# --- shapes and the config ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["unet_geu", "bicubic", "classical"])
@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("n_frames", [1, 7])
def test_output_shape(name, scale, n_frames):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, n_frames=n_frames, scale=scale, **SMALL))
    frames = torch.rand(2, n_frames, 3, 32, 32)
    out = model(frames)
    assert out.shape == (2, 3, 32 * scale, 32 * scale)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    if name != "unet_geu":
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not list(model.parameters())


@pytest.mark.parametrize("fusion", ["early", "shared"])
@pytest.mark.parametrize("residual", [True, False])
def test_gradients_reach_every_parameter(fusion, residual):
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_frames=3, scale=4, width=8, depth=3, n_geu=3, fusion=fusion, residual=residual
    )
    model = build_model(cfg).train()
    frames, target = torch.rand(2, 3, 3, 16, 16), torch.rand(2, 3, 64, 64)
    loss = ((model(frames) - target) ** 2).mean()
    loss.backward()
    named = list(model.named_parameters())
    assert named
    for name, p in named:
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_fusion_modes_differ_and_eval_clamps():
    torch.manual_seed(0)
    early = build_model(ModelConfig(n_frames=5, scale=2, fusion="early", **SMALL))
    shared = build_model(ModelConfig(n_frames=5, scale=2, fusion="shared", **SMALL))
    assert early.head[0].in_channels == 5 * 3  # frames stacked along channels
    assert shared.head[0].in_channels == 3  # one encoder shared by every frame
    assert shared.fuse[0].in_channels == 5 * 8
    frames = torch.rand(1, 5, 3, 16, 16)
    for model in (early, shared):
        with torch.no_grad():
            model.tail.bias.fill_(2.0)  # push the output out of range
            assert model.train()(frames).max() > 1.0  # training: not clamped
            out = model.eval()(frames)
        assert out.shape == (1, 3, 32, 32) and out.max() <= 1.0 and out.min() >= 0.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_frames", 0),
        ("n_frames", 17),
        ("scale", 3),
        ("scale", 16),
        ("width", 0),
        ("depth", 0),
        ("n_geu", -1),
        ("fusion", "late"),
        ("back_projection", -1),
        ("back_projection", 21),
        ("name", "srgan"),
        ("residual", "yes"),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{field: value})
    with pytest.raises(MfsrError, match=field):
        from_dict(ModelConfig, {field: value}, "model.yaml: ")


def test_presets_and_yaml_errors(tmp_path):
    paper = load_model_config("paper")
    assert (paper.name, paper.n_frames, paper.scale, paper.n_geu) == ("unet_geu", 7, 8, 3)
    assert load_model_config("tiny", {"scale": 4, "fusion": "shared"}).scale == 4
    for preset in ("quick", "bicubic", "classical"):
        assert load_model_config(preset).name in MODELS
    bad = tmp_path / "m.yaml"
    bad.write_text("name: unet_geu\nwidht: 8\n")
    with pytest.raises(MfsrError, match=r"m\.yaml.*widht.*did you mean 'width'"):
        load_model_config(bad)
    bad.write_text("scale: 3\n")
    with pytest.raises(MfsrError, match=r"m\.yaml.*scale"):
        load_model_config(bad)
    with pytest.raises(MfsrError, match="unknown model preset"):
        load_model_config("nope")


def test_a_bad_override_is_not_blamed_on_the_preset_file():
    """`mfsr model summary --preset quick --set fusion=flw` once said the packaged quick.yaml
    held the bad value."""
    with pytest.raises(MfsrError, match=r"quick\.yaml, overridden: fusion: expected one of") as err:
        load_model_config("quick", {"fusion": "flw"})
    assert "flw" in str(err.value)
    with pytest.raises(MfsrError, match=r"quick\.yaml, overridden: widht: unknown key"):
        load_model_config("quick", {"widht": 8})


def test_a_bad_file_is_blamed_on_the_file_and_an_override_can_fix_it(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("name: unet_geu\nscale: 3\n")
    with pytest.raises(MfsrError, match=r"m\.yaml: scale"):
        load_model_config(bad, {"width": 8})
    assert load_model_config(bad, {"scale": 4}).scale == 4


def test_bad_input_shapes():
    model = build_model(ModelConfig(n_frames=3, scale=2, width=4, depth=3, n_geu=1))
    with pytest.raises(ValueError, match=r"depth.*divisible by 2\*\*\(depth-1\) = 4"):
        model(torch.rand(1, 3, 3, 30, 32))
    with pytest.raises(ValueError, match="n_frames"):
        model(torch.rand(1, 5, 3, 32, 32))
    with pytest.raises(ValueError, match="in_channels"):
        model(torch.rand(1, 3, 1, 32, 32))
    for m in (model, Bicubic(2), ClassicalFusion(2)):
        with pytest.raises(ValueError, match="frames"):
            m(torch.rand(3, 3, 32, 32))


# --- learning: overfit a few real faces --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_faces(lfw_root):
    """4 real LFW faces, x2, 3 frames of 16x16 -> 32x32 HR, default (realistic) degradation."""
    frames, hr, _ = lfw_sequences(lfw_root, 4, 2, 32, 3, "default", face=120)
    return frames, hr


def charbonnier(d: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(d**2 + 1e-6).mean()


@pytest.mark.parametrize("loss_name", ["mse", "charbonnier"])
def test_overfits_real_faces(tiny_faces, loss_name):
    frames, hr = tiny_faces
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_frames=3, scale=2, width=32, depth=2, n_geu=1))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = {"mse": lambda d: (d**2).mean(), "charbonnier": charbonnier}[loss_name]
    start, best, steps = time.perf_counter(), 0.0, 0
    for steps in range(1, 401):  # reached in about 200 steps
        loss = loss_fn(model(frames) - hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if steps % 25 == 0:
            with torch.no_grad():
                best = psnr(model.eval()(frames), hr).mean().item()
            model.train()
            if best >= 35.0:
                break
    elapsed = time.perf_counter() - start
    assert best >= 35.0, f"{loss_name}: {best:.2f} dB after {steps} steps ({elapsed:.1f} s)"


# --- classical fusion with known sub-pixel motion ----------------------------------------------


def test_shift_sign_convention():
    torch.manual_seed(0)
    ref = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 40, 40), 3, 1, 1)[0]
    moved = torch.roll(ref, shifts=(1, 2), dims=(1, 2))  # content moves +2 in x, +1 in y
    shifts = estimate_shifts(torch.stack([moved, ref, moved]))
    assert torch.allclose(shifts[1], torch.zeros(2))
    assert torch.allclose(shifts[0], torch.tensor([2.0, 1.0]), atol=0.05)


@pytest.fixture(scope="module")
def shifted_faces(lfw_root):
    """4 real LFW faces, x4, 7 frames 32x32 -> 128x128, translation only, no blur/noise/JPEG."""
    return lfw_sequences(lfw_root, 4, 4, 128, 7, "clean", face=None)


def test_registration_recovers_known_shifts(shifted_faces):
    frames, _, params = shifted_faces
    errors = []
    for seq, p in zip(frames, params):
        true = torch.tensor([f.shift for f in p.frames])  # LR px, content moves by +shift
        assert true.abs().max() > 0.3  # the motion really is sub-pixel and non-trivial
        errors.append((estimate_shifts(seq) - true).abs().max().item())
    assert max(errors) < 0.1, f"registration errors (LR px): {errors}"  # measured <= 0.05


def test_classical_beats_bicubic(shifted_faces):
    frames, hr, _ = shifted_faces
    bicubic = psnr(Bicubic(4)(frames), hr)
    classical = psnr(ClassicalFusion(4)(frames), hr)
    median = psnr(ClassicalFusion(4, reduce="median")(frames), hr)
    # Measured on these faces: about +2.5 dB on average (10 back-projection steps).
    assert classical.mean() > bicubic.mean() + 1.0, (classical, bicubic)
    assert (classical > bicubic).all()
    assert median.mean() > bicubic.mean() + 1.0


# --- determinism, summary, CLI, imports --------------------------------------------------------


def _train_steps(seed: int) -> tuple[dict, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(n_frames=3, scale=2, fusion="shared", **SMALL))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    frames, target = torch.rand(2, 3, 3, 16, 16), torch.rand(2, 3, 32, 32)
    for _ in range(3):
        loss = ((model(frames) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.state_dict(), model(frames)


def test_same_seed_same_weights_and_outputs():
    (w1, y1), (w2, y2), (w3, _) = _train_steps(0), _train_steps(0), _train_steps(1)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert torch.equal(y1, y2)
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)
    frames = torch.rand(1, 5, 3, 24, 24)
    assert torch.equal(ClassicalFusion(2)(frames), ClassicalFusion(2)(frames))


def test_summary_and_cli():
    cfg = load_model_config("tiny")
    row = summarize(cfg, lr_size=16)
    torch.manual_seed(0)
    assert row["params"] == sum(p.numel() for p in build_model(cfg).parameters())
    assert row["gflops"] > 0 and row["hr_size"] == 32
    assert summarize(ModelConfig(name="bicubic"))["params"] == 0
    assert "GFLOPs/sample" in format_table([row])
    runner = CliRunner()
    result = runner.invoke(
        model_app, ["summary", "--preset", "tiny", "--sweep", "n_frames=1,3", "--lr-size", "16"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("unet_geu") == 2
    result = runner.invoke(model_app, ["summary", "--preset", "tiny", "--set", "scale=3"])
    assert isinstance(result.exception, MfsrError) and "scale" in str(result.exception)


def test_importing_models_stays_light():
    code = (
        "import sys, mfsr.models; "
        "print(sorted(m for m in ('cv2', 'torchvision', 'lpips', 'dlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
