"""dlib's face-recognition ResNet in PyTorch, read from dlib's own model file.

mfsr measures identity with dlib (``dlib_face_recognition_resnet_model_v1.dat`` of
``face-recognition-models``: a 29-layer ResNet mapping an aligned 150 x 150 face chip to a 128-d
descriptor, distance < 0.6 = same person). dlib's Python API computes descriptors but exposes
neither the weights nor gradients, and no maintained package converts dlib's DNN files to
PyTorch; the only pretrained face recognizer available offline is therefore unusable as a
training loss. This module is the hand-written replacement: :func:`read_dlib_resnet` parses
dlib's serialisation of that network (dlib's ``serialize``: integers as a length/sign byte and
little-endian bytes, strings as length + bytes, tensors as a version, 4 dimensions and raw
little-endian float32; layers stored input first), :class:`FaceResNet` rebuilds it from torch
layers (each convolution with the following affine layer folded in), and tests check it
against dlib's own descriptors on real faces (tests/test_face_resnet.py: agreement to 1e-5).

The weights are real, pretrained and offline (shipped in the ``face-recognition-models`` wheel
that mfsr already needs), unlike the ImageNet trunks of the VGG/LPIPS losses.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mfsr.errors import MfsrError
from mfsr.faces import model_path

#: SHA-256 of ``dlib_face_recognition_resnet_model_v1.dat`` as shipped by face-recognition-models.
OFFICIAL_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
MODEL_NAME = "dlib_face_recognition_resnet_model_v1"
CHIP_SIZE = 150

# A layer record starts with its name, serialised as a 1-byte length prefix (0x01 = one byte
# follows) and the name's length. Tags and skips are stored without names and carry no weights.
_LAYER_NAME = re.compile(
    rb"\x01[\x04-\x20](input_rgb_image_sized|con_4|affine_|relu_|max_pool_2|avg_pool_2"
    rb"|add_prev_|fc_2)"
)


class _Reader:
    """Sequential reader of dlib's serialisation format."""

    def __init__(self, data: bytes, pos: int, path: Path) -> None:
        self.data, self.pos, self.path = data, pos, path

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise MfsrError(
                f"{self.path}: truncated dlib model file (ends at byte {len(self.data)})"
            )

    def int(self) -> int:
        self._need(1)
        head = self.data[self.pos]
        size, negative = head & 0x0F, head & 0x80
        if size > 8:
            raise MfsrError(f"{self.path}: not a dlib model file (bad integer at byte {self.pos})")
        self._need(1 + size)
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if negative else value

    def string(self) -> str:
        n = self.int()
        self._need(n)
        text = self.data[self.pos : self.pos + n].decode("latin-1")
        self.pos += n
        return text

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return float(mantissa) * 2.0**exponent

    def tensor(self) -> np.ndarray:
        version = self.int()
        dims = [self.int() for _ in range(4)]
        if version != 2 or min(dims) < 0:
            raise MfsrError(
                f"{self.path}: unsupported dlib tensor (version {version}) at {self.pos}"
            )
        count = int(np.prod(dims))
        self._need(4 * count)
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).copy()
        self.pos += 4 * count
        return values


@dataclass
class _Conv:
    weight: np.ndarray  # (out, in, k, k), the affine layer after it folded in
    bias: np.ndarray
    stride: int
    padding: int


def read_dlib_resnet(path: str | Path) -> tuple[np.ndarray, list[_Conv], np.ndarray]:
    """Parse dlib's face-recognition ResNet file.

    Returns the input layer's per-channel mean (RGB, 0-255 scale), the 29 convolutions in
    network order (each followed in dlib by an affine layer, folded in here:
    ``w' = w * gamma``, ``b' = b * gamma + beta``) and the final ``(256, 128)`` projection.
    Raises :class:`MfsrError` naming the file when it is not that network.
    """
    path = Path(path)
    return _parse(_read(path), path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MfsrError(f"{path}: cannot read dlib model file ({exc.strerror})") from exc


def _parse(data: bytes, path: Path) -> tuple[np.ndarray, list[_Conv], np.ndarray]:
    records = [(m.start(), m.group(1).decode()) for m in _LAYER_NAME.finditer(data)]
    names = [name for _, name in records]
    if names[:1] != ["input_rgb_image_sized"] or names.count("con_4") != 29 or "fc_2" not in names:
        raise MfsrError(f"{path}: not dlib's face recognition ResNet v1 ({MODEL_NAME}.dat)")
    mean, convs, projection, seen = None, [], None, []
    for (pos, name), next_name in zip(records, [*names[1:], ""], strict=True):
        reader = _Reader(data, pos, path)
        if reader.string() != name:
            continue  # a longer string that starts like a layer name
        seen.append(name)
        if name == "input_rgb_image_sized":
            mean = np.array([reader.float() for _ in range(3)], dtype=np.float32)
            if [reader.int(), reader.int()] != [CHIP_SIZE, CHIP_SIZE]:
                raise MfsrError(f"{path}: expected a {CHIP_SIZE} x {CHIP_SIZE} input layer")
        elif name == "con_4":
            params = reader.tensor()
            n_out, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.int() for _ in range(7))
            n_in = (params.size - n_out) // (n_out * rows * cols)
            if n_out * n_in * rows * cols + n_out != params.size or rows != cols:
                raise MfsrError(f"{path}: inconsistent convolution at byte {pos}")
            if next_name != "affine_" or stride_y != stride_x or pad_y != pad_x:
                raise MfsrError(f"{path}: unexpected layer layout at byte {pos}")
            weight = params[:-n_out].reshape(n_out, n_in, rows, cols)
            convs.append(_Conv(weight, params[-n_out:], stride_y, pad_y))
        elif name == "affine_":
            params = reader.tensor()
            if not convs or params.size != 2 * convs[-1].bias.size:
                raise MfsrError(f"{path}: affine layer at byte {pos} does not follow a convolution")
            gamma, beta = np.split(params, 2)
            conv = convs[-1]
            conv.weight = conv.weight * gamma[:, None, None, None]
            conv.bias = conv.bias * gamma + beta
        elif name == "fc_2":
            n_out, n_in = reader.int(), reader.int()
            params = reader.tensor()
            if params.size != n_in * n_out:
                raise MfsrError(f"{path}: inconsistent projection layer at byte {pos}")
            projection = params.reshape(n_in, n_out)
    if mean is None or projection is None or projection.shape != (256, 128):
        raise MfsrError(f"{path}: not dlib's face recognition ResNet v1 ({MODEL_NAME}.dat)")
    if seen != _expected_layers(convs):
        raise MfsrError(f"{path}: layer sequence differs from dlib's face recognition ResNet v1")
    arrays = [projection, *(a for c in convs for a in (c.weight, c.bias))]
    if not all(np.isfinite(a).all() for a in arrays):
        raise MfsrError(f"{path}: the network has NaN or infinite weights")
    return mean, convs, projection


def _expected_layers(convs: list[_Conv]) -> list[str]:
    """The named layers, input first, of the network :class:`FaceResNet` builds from ``convs``:
    stem, then residual blocks (a stride-2 first convolution means a 2 x 2 average-pooled
    skip), then the global average pool and the projection."""
    names = ["input_rgb_image_sized", "con_4", "affine_", "relu_", "max_pool_2"]
    for first in convs[1::2]:
        names += ["con_4", "affine_", "relu_", "con_4", "affine_"]
        names += ["avg_pool_2"] if first.stride == 2 else []
        names += ["add_prev_", "relu_"]
    return [*names, "avg_pool_2", "fc_2"]


def _conv(spec: _Conv) -> nn.Conv2d:
    out_ch, in_ch, k, _ = spec.weight.shape
    conv = nn.Conv2d(in_ch, out_ch, k, stride=spec.stride, padding=spec.padding)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(spec.weight))
        conv.bias.copy_(torch.from_numpy(spec.bias))
    return conv


class _Residual(nn.Module):
    """dlib's ``ares`` / ``ares_down`` block: relu(conv(relu(conv(x))) + skip(x)).

    In a down block the first convolution has stride 2 without padding and the skip path is a
    2 x 2 average pool. dlib adds tensors of different shapes by zero-filling outside their
    overlap (more channels after the block, and a one-pixel mismatch at 8 -> 3 vs 4 px).
    """

    def __init__(self, first: _Conv, second: _Conv) -> None:
        super().__init__()
        self.down = first.stride == 2
        self.conv1, self.conv2 = _conv(first), _conv(second)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        if y.shape != skip.shape:
            c, h, w = (max(a, b) for a, b in zip(y.shape[1:], skip.shape[1:], strict=True))
            y = F.pad(y, (0, w - y.shape[3], 0, h - y.shape[2], 0, c - y.shape[1]))
            skip = F.pad(skip, (0, w - skip.shape[3], 0, h - skip.shape[2], 0, c - skip.shape[1]))
        return F.relu(y + skip)


class FaceResNet(nn.Module):
    """dlib's face-recognition ResNet: ``(B, 3, 150, 150)`` RGB in [0, 1] -> ``(B, 128)``.

    The input must be a face chip aligned as ``dlib.get_face_chip`` does (150 px, padding 0.25);
    see :func:`mfsr.losses.identity.face_chips` for a differentiable approximation. Euclidean
    distances between outputs are dlib's descriptor distances (< 0.6: same person). Frozen
    (no parameter requires grad) and in eval mode; gradients flow to the input.
    """

    def __init__(self, mean: np.ndarray, convs: list[_Conv], projection: np.ndarray) -> None:
        super().__init__()
        if len(convs) % 2 != 1:
            raise MfsrError("face ResNet: expected a stem convolution and pairs of block convs")
        self.register_buffer("mean", torch.from_numpy(mean).view(1, 3, 1, 1) / 255.0, False)
        self.stem = _conv(convs[0])
        self.blocks = nn.Sequential(
            *(_Residual(a, b) for a, b in zip(convs[1::2], convs[2::2], strict=True))
        )
        self.projection = nn.Linear(projection.shape[0], projection.shape[1], bias=False)
        with torch.no_grad():
            self.projection.weight.copy_(torch.from_numpy(projection.T.copy()))
        self.requires_grad_(False)
        self.eval()

    def forward(self, chips: Tensor) -> Tensor:
        return self.descriptor_and_features(chips, 0)[0]

    def descriptor_and_features(self, chips: Tensor, n_blocks: int) -> tuple[Tensor, Tensor]:
        """The descriptors ``(B, 128)`` and the activations after the first ``n_blocks``
        residual blocks (0: after the stem and its max pool, ``(B, 32, 35, 35)``), in one pass."""
        if chips.ndim != 4 or tuple(chips.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(
                f"FaceResNet expects (B, 3, {CHIP_SIZE}, {CHIP_SIZE}) face chips, "
                f"got {tuple(chips.shape)}"
            )
        # dlib: (pixel - mean) / 256 on the 0-255 scale
        x = (chips - self.mean) * (255.0 / 256.0)
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        features = x
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index + 1 == n_blocks:
                features = x
        return self.projection(x.mean(dim=(2, 3))), features


@dataclass(frozen=True)
class FaceResNetInfo:
    """Which file the network came from (recorded with runs that use it)."""

    path: str
    sha256: str
    official: bool


def load_face_resnet(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[FaceResNet, FaceResNetInfo]:
    """Build :class:`FaceResNet` from dlib's model file (default: the one of
    ``face-recognition-models``) on ``device``; returns the network and its provenance."""
    if path is None:
        path = model_path(MODEL_NAME)
    path = Path(path)
    data = _read(path)  # read once: parsed and hashed
    net = FaceResNet(*_parse(data, path)).to(device)
    sha256 = hashlib.sha256(data).hexdigest()
    return net, FaceResNetInfo(str(path), sha256, sha256 == OFFICIAL_SHA256)
