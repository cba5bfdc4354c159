"""U-Net+GEU: a U-Net at LR resolution with gated blocks at the bottleneck and sub-pixel upsampling.

The paper (Mezina) uses "U-Net+GEU 3" from Rajnoha, Mezina & Burget (MLFDB, 2020) without
defining GEU; this module is mfsr's documented *interpretation* (``docs/model.md``):

* **GEU** (gated embedding unit, after Miech et al. 2018, made convolutional and residual)::

      e = W_e * x + b_e                  3x3 conv: the embedding
      y = x + e ⊙ σ(W_g * e + b_g)       1x1 conv + sigmoid: a per-pixel, per-channel gate

* **Network**: frame fusion -> U-Net encoder (``depth`` levels, channels ``width * 2**i``,
  2x2 max-pool between levels) -> ``n_geu`` GEU blocks at the bottleneck -> decoder (2x2
  transposed conv, concatenated skip, two 3x3 convs) -> ``log2(scale)`` x (3x3 conv to 4x
  channels + PixelShuffle(2)) -> 3x3 conv to ``C`` channels -> (+ bicubic upsampling of the
  reference frame when ``residual``).
* **Fusion**: ``early`` stacks the N frames along channels (``N*C`` input channels);
  ``shared`` runs one two-conv encoder with shared weights on every frame and fuses the N
  feature maps with a 1x1 conv; ``registered`` registers the frames first and fuses aligned,
  agreement-weighted features with the classical multi-frame estimate, which also replaces the
  bicubic reference as the residual base (:mod:`mfsr.models.fusion`); ``flow`` is
  ``registered`` plus a learned residual flow that refines each frame's alignment.

Input ``frames``: float ``(B, N, C, h, w)`` in [0, 1], reference at ``N // 2``, ``h`` and ``w``
divisible by ``2**(depth-1)``. Output ``(B, C, s*h, s*w)``: **not clamped in training mode**
(a clamp would stop gradients of out-of-range pixels), clamped to [0, 1] in eval mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from mfsr.models.fusion import RegisteredFusion

if TYPE_CHECKING:  # a type only: mfsr.models imports this module
    from mfsr.models import ModelConfig

Fusion = Literal["early", "shared", "registered", "flow"]
FUSIONS: tuple[str, ...] = ("early", "shared", "registered", "flow")


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convs (padding 1) with LeakyReLU(0.2); keeps the spatial size."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), _act(), nn.Conv2d(c_out, c_out, 3, padding=1), _act()
    )


class GEU(nn.Module):
    """Residual gated embedding unit on ``(B, c, h, w)`` features; same shape out.

    ``y = x + e * sigmoid(gate(e))`` with ``e = embed(x)`` (3x3 conv) and ``gate`` a 1x1 conv.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(channels, channels, 3, padding=1)
        self.gate = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x)
        return x + e * torch.sigmoid(self.gate(e))


class UNetGEU(nn.Module):
    """Multi-frame U-Net+GEU super-resolution network (see the module docstring), sized by a
    :class:`mfsr.models.ModelConfig`, which checks every field when it is made (the one place
    they are validated). Its fields used here: ``n_frames`` N (the reference is frame
    ``N // 2``), ``scale`` s, ``in_channels`` C (the output has C too), ``width`` (channels at
    level ``i``: ``width * 2**i``), ``depth`` (input sides divide by ``2**(depth-1)``),
    ``n_geu`` (0 = a plain U-Net), ``fusion``, ``residual`` (add the bicubic reference, or
    ``registered``'s classical estimate) and ``back_projection``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n_frames, scale, in_channels, width = cfg.n_frames, cfg.scale, cfg.in_channels, cfg.width
        self.n_frames, self.scale, self.in_channels = n_frames, scale, in_channels
        self.depth, self.fusion, self.residual = cfg.depth, cfg.fusion, cfg.residual
        if cfg.fusion == "early":
            stem = nn.Conv2d(n_frames * in_channels, width, 3, padding=1)
            self.head = nn.Sequential(stem, _act())
            self.fuse = nn.Identity()
        elif cfg.fusion == "shared":
            self.head = conv_block(in_channels, width)  # shared weights, run once per frame
            self.fuse = nn.Sequential(nn.Conv2d(n_frames * width, width, 1), _act())
        else:  # registered, or flow: registered with learned residual alignment
            self.head = RegisteredFusion(
                n_frames, scale, in_channels, width, cfg.back_projection, cfg.fusion == "flow"
            )
            self.fuse = nn.Identity()
        depth = cfg.depth
        chans = [width * 2**i for i in range(depth)]
        self.encoder = nn.ModuleList(
            [conv_block(width, chans[0])]
            + [conv_block(chans[i - 1], chans[i]) for i in range(1, depth)]
        )
        self.geu = nn.Sequential(*[GEU(chans[-1]) for _ in range(cfg.n_geu)])
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in range(depth - 1)]
        )
        self.decoder = nn.ModuleList([conv_block(2 * chans[i], chans[i]) for i in range(depth - 1)])
        stages = []
        for _ in range(scale.bit_length() - 1):  # log2(scale) x2 stages
            stages += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2), _act()]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(width, in_channels, 3, padding=1)

    def check_input(self, frames: torch.Tensor) -> None:
        """Raise ValueError naming the mismatching field for a badly shaped ``frames``."""
        if frames.dim() != 5:
            raise ValueError(
                f"frames: expected a (B, N, C, h, w) tensor, got shape {tuple(frames.shape)}"
            )
        _, n, c, h, w = frames.shape
        if n != self.n_frames:
            raise ValueError(f"n_frames: model expects {self.n_frames} frames, got {n}")
        if c != self.in_channels:
            raise ValueError(f"in_channels: model expects {self.in_channels} channels, got {c}")
        m = 2 ** (self.depth - 1)
        if h % m or w % m:
            raise ValueError(
                f"depth: input size {w}x{h} must be divisible by 2**(depth-1) = {m} "
                f"(depth={self.depth}); crop or pad the frames, or lower depth"
            )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, N, C, h, w)`` in [0, 1] -> ``(B, C, s*h, s*w)`` (clamped only in eval mode)."""
        self.check_input(frames)
        b, n, c, h, w = frames.shape
        base = None  # the residual base: bicubic reference, or the classical estimate
        if self.fusion == "early":
            x = self.head(frames.reshape(b, n * c, h, w))
        elif self.fusion == "shared":
            feats = self.head(frames.reshape(b * n, c, h, w))
            x = self.fuse(feats.reshape(b, -1, h, w))
        else:
            x, base = self.head(frames)
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = self.geu(x)
        for i in reversed(range(self.depth - 1)):
            x = self.decoder[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        out = self.tail(self.upsample(x))
        if self.residual:
            if base is None:  # global residual: bicubic upsampling of the reference
                ref = frames[:, n // 2]
                base = F.interpolate(
                    ref, scale_factor=self.scale, mode="bicubic", align_corners=False
                )
            out = out + base
        return out if self.training else out.clamp(0.0, 1.0)
