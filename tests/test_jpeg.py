"""mfsr.data.jpeg: libjpeg's baseline JPEG in torch, bit for bit against Pillow's libjpeg."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfsr.data.degrade import jpeg_roundtrip as pillow_roundtrip
from mfsr.data.images import read_rgb
from mfsr.data.jpeg import jpeg_roundtrip, quant_tables


def torch_roundtrip(images: list[np.ndarray], qualities: list[int]) -> list[np.ndarray]:
    """One batch of same-sized uint8 HWC images, image i at qualities[i]."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    out = jpeg_roundtrip(batch, torch.tensor(qualities))
    return list(out.permute(0, 2, 3, 1).numpy())


@pytest.fixture(scope="module")
def faces(lfw_root) -> list[np.ndarray]:
    """Eight real LFW photos of different people (250 x 250)."""
    people = sorted(p for p in lfw_root.iterdir() if p.is_dir())[::700][:8]
    return [read_rgb(sorted(p.iterdir())[0]) for p in people]


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (16, 16), (37, 29), (250, 250), (9, 7)])
def test_equals_pillow_on_real_faces(faces, size):
    """Every pixel equal to Pillow's save + open at each quality, on faces at the LR sizes of
    x8/x4/x2 training and on odd sizes where libjpeg pads rows and columns its own way."""
    import cv2

    h, w = size
    small = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in faces]
    for qualities in ([1, 10, 30, 50, 60, 75, 95, 100], [95, 85, 70, 60, 40, 20, 5, 2]):
        ours = torch_roundtrip(small, qualities)
        for i, (image, q) in enumerate(zip(small, qualities)):
            np.testing.assert_array_equal(ours[i], pillow_roundtrip(image, q), f"face {i}, q {q}")


def test_equals_pillow_on_hostile_pixels():
    """Noise, black-and-white and flat images of 1 to 40 px (extreme DCT coefficients, the
    clamps of the colour conversion, single-block and single-pixel images)."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(1, 41, 2))
        kind = trial % 3
        if kind == 0:
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == 1:
            image = (rng.integers(0, 2, (h, w, 3)) * 255).astype(np.uint8)
        else:
            image = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        q = int(rng.integers(1, 101))
        (ours,) = torch_roundtrip([image], [q])
        np.testing.assert_array_equal(
            ours, pillow_roundtrip(image, q), f"{h}x{w} kind {kind} q {q}"
        )


def test_quality_zero_leaves_an_image_alone(faces):
    small = [np.ascontiguousarray(f[::8, ::8]) for f in faces[:3]]
    ours = torch_roundtrip(small, [0, 60, -1])
    np.testing.assert_array_equal(ours[0], small[0])
    np.testing.assert_array_equal(ours[2], small[2])
    np.testing.assert_array_equal(ours[1], pillow_roundtrip(small[1], 60))


def test_quant_tables_follow_the_ijg_scaling():
    tables = quant_tables(torch.tensor([50, 100, 1, 75]))
    assert tables[0, 0, 0].tolist() == [16, 11, 10, 16, 24, 40, 51, 61]  # Annex K at q 50
    assert tables[0, 1, 7].tolist() == [99] * 8
    assert torch.all(tables[1] == 1)  # q 100: no quantisation beyond rounding
    assert int(tables[2].max()) == 255 and int(tables[2].min()) == 255  # q 1: baseline clamp
    assert tables[3, 0, 0, 0] == 8  # (16 * 50 + 50) // 100


def test_refuses_what_it_cannot_code():
    with pytest.raises(ValueError, match="uint8"):
        jpeg_roundtrip(torch.zeros(1, 3, 8, 8), torch.tensor([50]))
    with pytest.raises(ValueError, match="uint8"):
        jpeg_roundtrip(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.tensor([50]))
