"""Batched registration and the ``registered`` and ``flow`` fusions of U-Net+GEU
(mfsr.models.fusion)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import lfw_sequences, psnr
from mfsr.models import ModelConfig, build_model
from mfsr.models.baselines import Bicubic, ClassicalFusion
from mfsr.models.fusion import FlowEstimator, RegisteredFusion, warp
from mfsr.models.registration import register, shift_image, simulate_frames

SMALL = dict(width=8, depth=2, n_geu=1)


@pytest.fixture(scope="module")
def default_faces(lfw_root):
    """4 real LFW faces, x4, 7 frames 32x32 -> 128x128, the `default` degradation."""
    return lfw_sequences(lfw_root, 4, 4, 128, 7, "default", face=None)


@pytest.fixture(scope="module")
def clean_faces(lfw_root):
    return lfw_sequences(lfw_root, 4, 4, 128, 7, "clean", face=None)


def test_batched_registration_equals_one_sequence_at_a_time(default_faces):
    frames, _, params = default_faces
    together = register(frames)
    alone = torch.cat([register(seq[None]) for seq in frames])
    assert torch.allclose(together, alone, atol=1e-6)
    assert together[:, 3].abs().max() == 0  # the reference does not move
    true = torch.tensor([[f.shift for f in p.frames] for p in params])
    # rotation, zoom, blur, noise and JPEG: translation is still found to a fraction of a pixel
    assert (together - true).abs().median() < 0.15


def _grid_sample_shift(image, shift, size):
    """The reference: translate by -shift and resample with grid_sample (bicubic, border)."""
    m, _, h, w = image.shape
    out_h, out_w = size
    ys = (2.0 * torch.arange(out_h, dtype=image.dtype) + 1.0) / out_h - 1.0
    xs = (2.0 * torch.arange(out_w, dtype=image.dtype) + 1.0) / out_w - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(m, out_h, out_w, 2).clone()
    grid[..., 0] += (2.0 * shift[:, 0] / w).view(m, 1, 1)
    grid[..., 1] += (2.0 * shift[:, 1] / h).view(m, 1, 1)
    return F.grid_sample(image, grid, mode="bicubic", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("size", [(24, 20), (96, 80), (48, 100)])
def test_separable_shift_equals_grid_sample(size):
    torch.manual_seed(0)
    image = torch.rand(6, 3, 24, 20, dtype=torch.float64)
    shift = (torch.rand(6, 2, dtype=torch.float64) - 0.5) * 8  # up to 4 px, borders reached
    expected = _grid_sample_shift(image, shift, size)
    assert torch.allclose(shift_image(image, shift, size), expected, atol=1e-12)
    single = shift_image(image.float(), shift.float(), size)
    assert torch.allclose(single, expected.float(), atol=1e-5)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_simulated_frames_equal_moving_then_pooling(scale):
    torch.manual_seed(1)
    hr = torch.rand(2, 3, 16 * scale, 16 * scale, dtype=torch.float64)
    shifts = (torch.rand(2, 5, 2, dtype=torch.float64) - 0.5) * 6  # up to 3 LR px
    size = hr.shape[-2:]
    moved = _grid_sample_shift(
        hr[:, None].expand(2, 5, *hr.shape[1:]).reshape(10, 3, *size),
        -scale * shifts.reshape(10, 2),
        size,
    )
    expected = F.avg_pool2d(moved, scale).reshape(2, 5, 3, 16, 16)
    assert torch.allclose(simulate_frames(hr, shifts, scale), expected, atol=1e-5)


@pytest.mark.parametrize("fusion", ["registered", "flow"])
@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("n_frames", [1, 3, 7])
def test_registered_shapes_and_gradients(scale, n_frames, fusion):
    torch.manual_seed(0)
    cfg = ModelConfig(n_frames=n_frames, scale=scale, fusion=fusion, **SMALL)
    model = build_model(cfg).train()
    if fusion == "flow":  # its last layer starts at zero, which stops the earlier layers' grads
        torch.nn.init.normal_(model.head.flow.net[-1].weight, std=0.01)
    frames = torch.rand(2, n_frames, 3, 16, 16)
    out = model(frames)
    assert out.shape == (2, 3, 16 * scale, 16 * scale) and torch.isfinite(out).all()
    ((out - torch.rand_like(out)) ** 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.eval()(frames).clamp(0, 1).equal(model(frames))  # eval output in [0, 1]


@pytest.mark.parametrize("fusion", ["registered", "flow"])
def test_registered_ignores_the_order_of_the_other_frames(default_faces, fusion):
    frames = default_faces[0][:2, :, :, :16, :16]
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_frames=7, scale=4, fusion=fusion, **SMALL)).eval()
    if fusion == "flow":  # a flow that is not zero, as after training
        torch.nn.init.normal_(model.head.flow.net[-1].weight, std=0.05)
    order = [5, 0, 6, 3, 1, 4, 2]  # the reference (3) stays in the middle
    with torch.no_grad():
        a, b = model(frames), model(frames[:, order])
    assert torch.allclose(a, b, atol=1e-5)
    shuffled_ref = [3, 0, 6, 5, 1, 4, 2]  # another frame in the reference's place: differs
    with torch.no_grad():
        assert not torch.allclose(a, model(frames[:, shuffled_ref]), atol=1e-3)


def test_registered_base_is_the_classical_estimate(default_faces):
    frames = default_faces[0]
    fusion = RegisteredFusion(7, 4, 3, 8, back_projection=2)
    aligned, estimate = fusion.classical(frames)
    assert torch.allclose(estimate, ClassicalFusion(4, back_projection=2)(frames), atol=1e-6)
    assert torch.allclose(aligned[:, 3], frames[:, 3], atol=1e-6)  # the reference stays


def test_untrained_registered_network_starts_from_the_frames(clean_faces):
    """With the U-Net's output zeroed the network returns its residual base: for `registered`
    the classical estimate from all 7 frames, which on real faces with sub-pixel motion is
    well ahead of the bicubic reference that `early` starts from."""
    frames, hr, _ = clean_faces
    outs = {}
    for fusion in ("early", "registered"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(n_frames=7, scale=4, fusion=fusion, **SMALL)).eval()
        torch.nn.init.zeros_(model.tail.weight)
        torch.nn.init.zeros_(model.tail.bias)
        with torch.no_grad():
            outs[fusion] = psnr(model(frames), hr)
    assert torch.allclose(outs["early"], psnr(Bicubic(4)(frames), hr), atol=1e-4)
    assert (outs["registered"] > outs["early"] + 1.0).all(), outs


def test_warp_follows_the_shift_convention(default_faces):
    """A zero flow leaves the frames as they are; a constant flow moves them as
    :func:`shift_image` does with the same shift (the registration's convention)."""
    image = default_faces[0].reshape(-1, 3, 32, 32)
    assert torch.equal(warp(image, torch.zeros(len(image), 2, 32, 32)), image)
    shift = torch.tensor([0.37, -0.61]).expand(len(image), 2)
    flow = shift[:, :, None, None].expand(len(image), 2, 32, 32)
    assert torch.allclose(warp(image, flow), shift_image(image, shift), atol=1e-5)


def test_untrained_flow_network_aligns_as_registered(default_faces):
    """The flow estimator's last layer starts at zero: before training, `flow` computes exactly
    what `registered` computes with the same weights."""
    frames = default_faces[0]
    torch.manual_seed(0)
    flow = build_model(ModelConfig(n_frames=7, scale=4, fusion="flow", **SMALL)).eval()
    registered = build_model(ModelConfig(n_frames=7, scale=4, fusion="registered", **SMALL))
    kept = {k: v for k, v in flow.state_dict().items() if not k.startswith("head.flow.")}
    registered.load_state_dict(kept)
    with torch.no_grad():
        assert torch.equal(flow(frames), registered.eval()(frames))


def test_flow_estimator_learns_what_a_translation_misses(default_faces):
    """Trained on one real face turned by 2 degrees about its centre (motion that no single
    translation undoes), the estimator's flow removes most of the difference to the reference.
    """
    ref = default_faces[0][:1, 3]  # (1, 3, 32, 32)
    turn = torch.tensor([[[0.99939, -0.03490, 0.0], [0.03490, 0.99939, 0.0]]])  # 2 degrees
    grid = F.affine_grid(turn, [1, 3, 32, 32], align_corners=False)
    moving = F.grid_sample(ref, grid, mode="bicubic", padding_mode="border", align_corners=False)
    torch.manual_seed(0)
    estimator = FlowEstimator(3, 16)
    optimizer = torch.optim.Adam(estimator.parameters(), lr=3e-3)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))  # borders are replicated

    def error() -> torch.Tensor:
        moved = warp(moving, estimator(torch.cat([moving, ref], dim=1)))
        return (moved - ref)[inner].abs().mean()

    before = error().item()
    for _ in range(150):
        optimizer.zero_grad()
        loss = error()
        loss.backward()
        optimizer.step()
    assert error().item() < 0.5 * before, (before, error().item())


def test_classical_part_is_a_plain_call_off_cuda(default_faces):
    """``graphed`` only replays CUDA graphs on CUDA: on the CPU ``classical`` is ``_classical``."""
    from mfsr.models.fusion import _classical

    frames = default_faces[0]
    head = RegisteredFusion(7, 4, 3, 8, 1)
    for got, want in zip(head.classical(frames), _classical(frames, 4, 1)):
        assert torch.equal(got, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graph replay)")
def test_cuda_graph_replay_equals_the_eager_call(default_faces):
    """Measured on an H200 (docs/benchmarks.md): replayed from a CUDA graph, the classical part
    gives the eager numbers, per batch shape, in and out of inference mode, call after call."""
    from mfsr.models import registration

    head = RegisteredFusion(7, 4, 3, 8, 1).cuda()
    frames = default_faces[0].cuda()
    for batch in (frames, frames[:3], frames.flip(0)):
        registration.CUDA_GRAPHS = False
        eager = head.classical(batch)
        registration.CUDA_GRAPHS = True
        try:
            for _ in range(2):
                for got, want in zip(head.classical(batch), eager):
                    assert torch.equal(got, want)
            with torch.inference_mode():
                assert torch.equal(head.classical(batch)[1], eager[1])
        finally:
            registration.CUDA_GRAPHS = True
