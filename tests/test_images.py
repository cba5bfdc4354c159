"""Safe image decoding: every mode becomes RGB uint8; every bad file is a one-line DataError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mfsr.data.images import decode_rgb, read_rgb, write_png
from mfsr.errors import DataError


def _save(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("L", "PNG"),
        ("LA", "PNG"),
        ("P", "PNG"),
        ("RGBA", "PNG"),
        ("CMYK", "JPEG"),
        ("I;16", "PNG"),
        ("1", "PNG"),
        ("RGB", "JPEG"),
        ("F", "TIFF"),
    ],
)
def test_every_mode_becomes_rgb_uint8(mode, fmt):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    img = base.convert(mode) if mode not in ("I;16", "F") else None
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16))
    if mode == "F":
        img = Image.fromarray(rng.random((20, 24), dtype=np.float32))
    out = decode_rgb(_save(img, fmt), name="x")
    assert out.shape == (20, 24, 3) and out.dtype == np.uint8


def test_grey_16bit_is_rescaled_not_clipped():
    arr = np.full((8, 8), 65535, dtype=np.uint16)
    arr[:4] = 32768
    out = decode_rgb(_save(Image.fromarray(arr), "PNG"))
    assert out[0, 0, 0] == 128 and out[7, 7, 0] == 255


def test_alpha_is_composited_over_black():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent
    rgba[0, 0, 3] = 255
    out = decode_rgb(_save(Image.fromarray(rgba), "PNG"))
    assert out[0, 0, 0] == 200 and out[1, 1, 0] == 0


def test_png_roundtrip(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", img)
    assert np.array_equal(read_rgb(tmp_path / "a.png"), img)


def _huge_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb's signature)."""
    data = _save(Image.new("RGB", (2, 2)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not a readable image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 50, "image"),
        (_huge_png(100_000, 100_000), "decompression bomb"),
        (_save(Image.new("RGB", (1, 1)), "PNG"), "only 1x1 pixels"),
    ],
    ids=["zero-byte", "garbage", "bad-jpeg-header", "bomb", "1x1"],
)
def test_bad_files_give_one_line_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad image.png"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_rgb(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_truncated_real_jpeg(tmp_path, lfw_root):
    photo = next(iter(sorted(lfw_root.glob("*/*.jpg"))))
    path = tmp_path / "truncated.jpg"
    path.write_bytes(photo.read_bytes()[:3000])
    with pytest.raises(DataError, match="truncated"):
        read_rgb(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_rgb(tmp_path / "nope.png")
    with pytest.raises(DataError, match="is a folder"):
        read_rgb(tmp_path)


@pytest.mark.parametrize("orientation, turn", [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(lfw_root, orientation, turn):
    """A phone photo stored sideways with an orientation tag decodes upright (as viewers show
    it), not as a sideways face; a broken tag leaves the pixels as stored."""
    photo = next(lfw_root.glob("*/*.jpg"))
    stored = Image.open(photo).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    buf = io.BytesIO()
    stored.save(buf, format="PNG", exif=exif.tobytes())  # lossless: compare pixels exactly
    upright = decode_rgb(buf.getvalue())
    assert np.array_equal(upright, np.rot90(np.asarray(stored), turn))
    exif[0x0112] = 99  # no such orientation
    buf = io.BytesIO()
    stored.save(buf, format="PNG", exif=exif.tobytes())
    assert np.array_equal(decode_rgb(buf.getvalue()), np.asarray(stored))
