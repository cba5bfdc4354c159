"""Pixel losses: MSE, L1 and Charbonnier (the paper's section 3.2, eqs. 1-2).

Each loss is a pure element-wise function plus a small module with ``loss_weight`` and
``reduction``, as in BasicSR. Inputs are ``pred`` and ``target`` float tensors of the same shape,
normally ``(B, 3, H, W)`` images in [0, 1]. Note the scale: the paper reports MSE on the 0-255
scale as a *metric*; as a training loss on [0, 1] images it differs only by the constant 255^2.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from mfsr.errors import MfsrError

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is 'mean', 'sum' or 'none'; else raise MfsrError."""
    if reduction not in REDUCTIONS:
        raise MfsrError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return reduction


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """'mean' -> scalar mean, 'sum' -> scalar sum, 'none' -> ``loss`` unchanged."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def check_pair(pred: Tensor, target: Tensor) -> None:
    """Raise ValueError when ``pred`` and ``target`` differ in shape (no silent broadcasting)."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Element-wise squared error ``(pred - target)^2``; same shape as the inputs."""
    return (pred - target) ** 2


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """Element-wise absolute error ``|pred - target|``; same shape as the inputs."""
    return (pred - target).abs()


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Element-wise Charbonnier penalty ``sqrt((pred - target)^2 + eps^2)``.

    Its mean is the paper's eq. 2 (eps = 0.001 there). It is at least ``eps`` for equal inputs
    and within ``eps`` of ``|pred - target|``, so it tends to L1 as ``eps -> 0``; unlike L1 its
    gradient is smooth at zero. (BasicSR uses eps = 1e-12.)
    """
    return torch.sqrt((pred - target) ** 2 + eps * eps)


class _PixelLoss(nn.Module):
    """Shared ``loss_weight`` / ``reduction`` handling for the element-wise losses."""

    def __init__(self, loss_weight: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """``pred``, ``target``: ``(B, C, H, W)`` in [0, 1]. Returns a scalar ('mean'/'sum')
        or the weighted element-wise tensor of the input shape ('none')."""
        check_pair(pred, target)
        return self.loss_weight * reduce_loss(self.elementwise(pred, target), self.reduction)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, reduction={self.reduction!r}"


class MSELoss(_PixelLoss):
    """Mean squared error (the paper's eq. 1) between ``pred`` and ``target``."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return mse(pred, target)


class L1Loss(_PixelLoss):
    """Mean absolute error between ``pred`` and ``target``."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return l1(pred, target)


class CharbonnierLoss(_PixelLoss):
    """Charbonnier loss (the paper's eq. 2): mean of ``sqrt(d^2 + eps^2)``, ``eps`` default 1e-3."""

    def __init__(
        self, eps: float = 1e-3, loss_weight: float = 1.0, reduction: Reduction = "mean"
    ) -> None:
        super().__init__(loss_weight, reduction)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)):
            raise MfsrError(f"charbonnier eps must be a number, got {eps!r}")
        if not (eps > 0 and math.isfinite(eps)):
            raise MfsrError(f"charbonnier eps must be a positive finite number, got {eps!r}")
        self.eps = float(eps)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return charbonnier(pred, target, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, {super().extra_repr()}"
