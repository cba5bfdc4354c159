"""The ``registered`` and ``flow`` frame fusions of U-Net+GEU: registration in front of the network.

Early fusion leaves the network to discover sub-pixel alignment by itself, and at the budgets
mfsr can train it does not (the 7-frame network ties the 1-frame one: docs/study.md, the
``quick`` and fusion studies). ``registered`` measures the motion instead and hands the
network frames that already agree with the reference:

1. *Registration* (no gradient): each frame's sub-pixel translation to the reference
   (:func:`mfsr.models.registration.register`, the classical baseline's estimator).
2. *Classical estimate*: shift-and-add of the registered frames on the HR grid plus
   ``back_projection`` steps of back-projection (:func:`~mfsr.models.registration.shift_and_add`).
   It is the global residual base (instead of the bicubic reference) and, folded to LR
   resolution by pixel-unshuffle, a network input: the sub-pixel detail that only the frames
   together hold is put where it belongs on the HR grid before the network sees it.
3. *Aligned per-frame features*: every frame, moved onto the reference (LR, bicubic), is
   encoded together with the reference by one shared conv block.
4. *Agreement weighting* (temporal attention after EDVR, Wang et al. 2019): a per-pixel weight
   ``sigmoid(<key(f_k), query(f_ref)>)`` scales each frame's features, and the weighted
   features are averaged over frames, so the fusion is invariant to the order of the frames
   and a frame that failed to register (occlusion, a wrong shift) is weighed down where it
   disagrees with the reference.

The fused features (3 + 4, concatenated, 1x1 conv) enter the U-Net encoder like early fusion's.

``flow`` adds learned alignment between 1 and 3 (after BasicVSR++, Chan et al. 2022, which
refines a measured optical flow with learned offsets): a small flow estimator reads each
registered frame with the reference and predicts a residual per-pixel flow of at most
``MAX_FLOW`` LR px, and the registered frame is resampled along it (bicubic ``grid_sample``).
It corrects what one translation per frame cannot: rotation, zoom, local motion. Its last
convolution starts at zero, so an untrained ``flow`` network aligns exactly as ``registered``.
A flow field rather than deformable convolution: ``torchvision.ops.deform_conv2d`` measured
47x a plain convolution's time on this project's CPU, and its CPU backward is not
deterministic (docs/model.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mfsr.models.registration import graphed, register, shift_and_add, shift_image


def _classical(
    frames: torch.Tensor, scale: int, back_projection: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`RegisteredFusion.classical` without the autocast and graph wrapping."""
    b, n, c, h, w = frames.shape
    shifts = register(frames)  # (B, N, 2) LR px
    estimate = shift_and_add(frames, shifts, scale, back_projection)
    aligned = shift_image(frames.reshape(b * n, c, h, w), shifts.reshape(b * n, 2))
    return aligned.reshape(b, n, c, h, w), estimate.clamp(0.0, 1.0)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


#: Largest residual flow, LR px: the `default` degradation's 2 degrees of rotation and 2 % zoom
#: move a 32 px face's edge by about 0.6 px after the best translation.
MAX_FLOW = 1.0


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``(M, C, h, w)`` images resampled along ``flow`` ``(M, 2, h, w)`` of ``(dx, dy)`` LR px:
    output pixel ``X`` reads the input at ``X + flow(X)`` (bicubic, borders replicated), the
    convention of :func:`~mfsr.models.registration.shift_image`. A zero flow returns ``image``
    exactly (bicubic taps at pixel centres are 0, 1, 0, 0)."""
    m, _, h, w = image.shape
    eye = torch.eye(2, 3, dtype=image.dtype, device=image.device).expand(m, 2, 3)
    grid = F.affine_grid(eye, [m, 1, h, w], align_corners=False)  # (M, h, w, 2) in [-1, 1]
    to_unit = torch.tensor([2.0 / w, 2.0 / h], dtype=image.dtype, device=image.device)
    grid = grid + flow.permute(0, 2, 3, 1) * to_unit
    return F.grid_sample(image, grid, mode="bicubic", padding_mode="border", align_corners=False)


class FlowEstimator(nn.Module):
    """(registered frame, reference) pairs ``(M, 2C, h, w)`` -> residual flow ``(M, 2, h, w)``
    in LR px, within ``±MAX_FLOW``; zero before training. Dilated convolutions give a 17 px
    receptive field at 4 convolutions (enough to see a 32 px face's rotation)."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2 * in_channels, width, 3, padding=1),
            _act(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            _act(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4),
            _act(),
            nn.Conv2d(width, 2, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)  # start from the measured registration
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return MAX_FLOW * torch.tanh(self.net(pairs))


class RegisteredFusion(nn.Module):
    """Frames ``(B, N, C, h, w)`` in [0, 1] -> features ``(B, width, h, w)`` and the classical
    estimate ``(B, C, s*h, s*w)`` in [0, 1] (the residual base). See the module docstring.

    Args:
        n_frames: N (the reference is ``N // 2``); ``scale``: s; ``in_channels``: C;
        ``width``: feature channels out; ``back_projection``: back-projection steps of the
        classical estimate (0 = plain shift-and-add); ``learned_flow``: add the ``flow``
        fusion's learned residual alignment (module docstring).
    """

    def __init__(
        self,
        n_frames: int,
        scale: int,
        in_channels: int,
        width: int,
        back_projection: int,
        learned_flow: bool = False,
    ) -> None:
        super().__init__()
        self.n_frames, self.scale, self.back_projection = n_frames, scale, back_projection
        self.flow = FlowEstimator(in_channels, max(width // 2, 8)) if learned_flow else None
        self.encode = nn.Sequential(  # shared by every frame: (aligned frame, reference) pairs
            nn.Conv2d(2 * in_channels, width, 3, padding=1),
            _act(),
            nn.Conv2d(width, width, 3, padding=1),
            _act(),
        )
        self.query = nn.Conv2d(width, width, 3, padding=1)
        self.key = nn.Conv2d(width, width, 3, padding=1)
        self.prior = nn.Sequential(
            nn.Conv2d(scale * scale * in_channels, width, 3, padding=1), _act()
        )
        self.fuse = nn.Sequential(nn.Conv2d(2 * width, width, 1), _act())

    def classical(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, C, h, w)`` -> frames moved onto the reference ``(B, N, C, h, w)`` and the
        classical estimate ``(B, C, s*h, s*w)`` clamped to [0, 1]; no gradient. On CUDA one
        replay of a CUDA graph (:func:`~mfsr.models.registration.graphed`)."""
        # float32 registration and resampling even under autocast: bf16 cannot hold 1/32 px
        with torch.no_grad(), torch.autocast(frames.device.type, enabled=False):
            return graphed(_classical, frames.float(), self.scale, self.back_projection)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c, h, w = frames.shape
        aligned, estimate = self.classical(frames)
        ref = frames[:, n // 2 : n // 2 + 1].expand(b, n, c, h, w)
        pairs = torch.cat([aligned, ref], dim=2).reshape(b * n, 2 * c, h, w)
        if self.flow is not None:  # learned residual alignment of each registered frame
            moved = warp(pairs[:, :c], self.flow(pairs))  # (B*N, C, h, w)
            pairs = torch.cat([moved, pairs[:, c:]], dim=1)
        feats = self.encode(pairs)  # (B*N, width, h, w)
        keys = self.key(feats).reshape(b, n, -1, h, w)
        query = self.query(feats.reshape(b, n, -1, h, w)[:, n // 2])  # (B, width, h, w)
        weight = torch.sigmoid((keys * query[:, None]).sum(dim=2, keepdim=True))  # (B, N, 1, h, w)
        pooled = (weight * feats.reshape(b, n, -1, h, w)).mean(dim=1)  # order-invariant
        prior = self.prior(F.pixel_unshuffle(estimate, self.scale))  # (B, width, h, w)
        return self.fuse(torch.cat([pooled, prior], dim=1)), estimate
