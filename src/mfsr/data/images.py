"""Reading and writing images safely.

All images inside mfsr are ``numpy.uint8`` arrays of shape ``(H, W, 3)`` in RGB order. Readers
convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, ...) to RGB, refuse images above a pixel limit
(decompression bombs) and turn every decoding problem into a :class:`~mfsr.errors.DataError`
naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps

from mfsr.config import write_bytes_atomic
from mfsr.errors import DataError

#: Largest image mfsr decodes, in pixels (about 8k x 8k). Larger declared sizes are refused
#: before decoding, so a tiny file claiming a huge size cannot exhaust memory.
MAX_PIXELS = 64_000_000

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; alpha is composited over black, 16-bit is rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode == "F":
        arr = np.clip(np.round(np.asarray(img, dtype=np.float64) * 255.0), 0, 255)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as ``uint8 (H, W, 3)`` RGB.

    Raises :class:`DataError` (message names the file) for missing, empty, truncated,
    non-image, too large or too small (< 2x2) files.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise DataError(f"{path}: empty file (0 bytes)")
    return decode_rgb(data, name=str(path), max_pixels=max_pixels)


def decode_rgb(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to ``uint8 (H, W, 3)`` RGB, turned upright by the EXIF
    orientation tag if there is one; see :func:`read_rgb`."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise DataError(
                    f"{name}: declared size {width}x{height} exceeds the limit of "
                    f"{max_pixels} pixels (possible decompression bomb)"
                )
            img.load()
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{name}: image is too large (possible decompression bomb)") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{name}: not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{name}: corrupt or truncated image ({exc})") from None
    if width < 2 or height < 2:
        raise DataError(f"{name}: image is only {width}x{height} pixels")
    # the EXIF orientation tag: the photo as a viewer shows it (an unreadable tag: as stored)
    with contextlib.suppress(OSError, SyntaxError, ValueError, KeyError, TypeError):
        img = ImageOps.exif_transpose(img)
    try:
        arr = np.asarray(_to_rgb(img), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"{name}: cannot convert mode {img.mode} to RGB ({exc})") from None
    return np.ascontiguousarray(arr)


def encode_png(image: np.ndarray) -> bytes:
    """Encode ``uint8 (H, W, 3)`` RGB as PNG bytes (deterministic for equal input)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``uint8 (H, W, 3)`` RGB to ``path`` as PNG, atomically (a full disk leaves no
    half-written file)."""
    write_bytes_atomic(path, encode_png(image))


def write_figure(figure: Any, path: str | os.PathLike) -> None:
    """Save a matplotlib ``figure`` to ``path`` as PNG, atomically (as :func:`write_png`)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png")
    write_bytes_atomic(path, buf.getvalue())


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All files with an image suffix under ``folder`` (recursive), sorted by relative path."""
    root = Path(folder)
    return sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
