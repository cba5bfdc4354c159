"""Generators for the hostile-input corpus (tests/test_hostile.py): every file is made here.

Each function writes one hostile (or awkward but legitimate) input and returns its path. Real
faces come from ../shared/data (an LFW photo, a VoxCeleb2 clip) so that a file which *should*
work really does contain a face; everything else is synthesised. Nothing here is committed as
a binary.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

RNG = np.random.default_rng(1234)


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb's signature)."""
    data = encoded(Image.new("RGB", (2, 2)), "PNG")
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]
    )


def face_image(photo: Path, mode: str) -> Image.Image:
    """The LFW ``photo`` converted to PIL ``mode`` (I;16 and F rescaled from 8-bit grey)."""
    rgb = Image.open(photo).convert("RGB")
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    if mode == "F":
        return Image.fromarray(np.asarray(rgb.convert("L"), np.float32))
    if mode == "P+transparency":
        pal = rgb.convert("P")
        pal.info["transparency"] = 0
        return pal
    return rgb.convert(mode)


# -- photos for `mfsr data build` (name -> bytes or a symlink target) --------------------------

IMAGE_MODES = {  # mode -> container
    "L": "PNG",
    "LA": "PNG",
    "P": "PNG",
    "P+transparency": "PNG",
    "RGBA": "PNG",
    "CMYK": "JPEG",
    "I;16": "PNG",
    "1": "PNG",
    "F": "TIFF",
}


def photo_corpus(photo: Path) -> dict[str, tuple[str, bytes | Path]]:
    """file name -> (expected fate, content). Fates: "used" or a skip-reason fragment."""
    real = photo.read_bytes()
    corpus: dict[str, tuple[str, bytes | Path]] = {
        "zero-byte.jpg": ("empty file", b""),
        "garbage.jpg": ("not a readable image", RNG.integers(0, 256, 4000, np.uint8).tobytes()),
        "text-as-image.png": ("not a readable image", b"hello, I am not a PNG\n" * 20),
        "truncated.jpg": ("truncated", real[: len(real) // 3]),
        "bad-jpeg-header.jpg": ("image", b"\xff\xd8\xff\xe0" + b"\x00" * 60 + real[200:]),
        "truncated.png": ("image", encoded(Image.open(photo), "PNG")[:5000]),
        "bomb.png": ("decompression bomb", huge_png(100_000, 100_000)),
        "one-pixel.png": ("only 1x1 pixels", encoded(Image.new("RGB", (1, 1)), "PNG")),
        "too-small.png": ("too small", encoded(Image.open(photo).resize((12, 12)), "PNG")),
        "notes.txt": ("not an image file", b"a text file among the photos\n"),
        "spaces and non-ASCII Zoë Saldaña ü.jpg": ("used", real),
        "animated.gif": (
            "not an image file",
            _animated_gif(photo),
        ),  # GIF is not a photo format here
        "webp-photo.webp": ("used", encoded(Image.open(photo), "WEBP", quality=90)),
        # a phone photo stored sideways with an orientation tag (decoded upright: test_images)
        "exif-sideways.jpg": ("used", _exif_jpeg(photo, 6)),
        "exif-bad-orientation.jpg": ("used", _exif_jpeg(photo, 99)),
    }
    for mode, fmt in IMAGE_MODES.items():
        name = f"mode-{mode.replace(';', '_').replace('+', '-')}.{fmt.lower()}"
        corpus[name] = ("used", encoded(face_image(photo, mode), fmt))
    return corpus


def _exif_jpeg(photo: Path, orientation: int) -> bytes:
    """The photo turned on its side, with the EXIF orientation tag that turns it back."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(Image.open(photo).transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)


def _animated_gif(photo: Path) -> bytes:
    first = Image.open(photo).convert("P")
    second = Image.open(photo).convert("L").convert("P")
    return encoded(first, "GIF", save_all=True, append_images=[second])


def write_photo_folder(root: Path, photo: Path, outside: Path) -> dict[str, str]:
    """A source folder, one identity per hostile file, plus symlinks; returns file -> fate."""
    fates = {}
    for k, (name, (fate, content)) in enumerate(photo_corpus(photo).items()):
        folder = root / f"Person {k:02d} Ünïcode"
        folder.mkdir(parents=True)
        (folder / name).write_bytes(content)
        fates[f"{folder.name}/{name}"] = fate
    links = root / "Linker"
    links.mkdir()
    outside.write_bytes(photo.read_bytes())
    (links / "link-outside.jpg").symlink_to(outside)
    fates["Linker/link-outside.jpg"] = "outside the source folder"
    (links / "dangling-link.jpg").symlink_to(root / "does-not-exist.jpg")
    fates["Linker/dangling-link.jpg"] = "cannot be read"
    assert sorted(k.split("/")[1] for k in fates) == sorted(PHOTO_NAMES)
    return fates


PHOTO_NAMES = [
    "zero-byte.jpg",
    "garbage.jpg",
    "text-as-image.png",
    "truncated.jpg",
    "bad-jpeg-header.jpg",
    "truncated.png",
    "bomb.png",
    "one-pixel.png",
    "too-small.png",
    "notes.txt",
    "spaces and non-ASCII Zoë Saldaña ü.jpg",
    "animated.gif",
    "webp-photo.webp",
    "exif-sideways.jpg",
    "exif-bad-orientation.jpg",
    *(f"mode-{m.replace(';', '_').replace('+', '-')}.{f.lower()}" for m, f in IMAGE_MODES.items()),
    "link-outside.jpg",
    "dangling-link.jpg",
]


def _writer(folder: Path, out: dict[str, tuple[Path, str]]):
    """``put(name, content, fate)``: write ``folder/name`` and record it in ``out``."""

    def put(name: str, content: bytes, fate: str) -> None:
        (folder / name).write_bytes(content)
        out[name] = (folder / name, fate)

    return put


# -- videos --------------------------------------------------------------------------------------


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """RGB uint8 frames -> an MJPG .avi (OpenCV's always-available codec)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


VIDEO_NAMES = [
    "zero-byte.mp4",
    "garbage.mp4",
    "text-as-video.mp4",
    "png-as-video.mp4",
    "truncated-head.mp4",
    "header-only.mp4",
    "no-face.avi",
    "three-frames.avi",
    "missing.mp4",
    "a-folder.mp4",
    "two-pixel.avi",
]


def video_corpus(folder: Path, clip: Path, photo: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected error fragment) for inputs that no command can use."""
    folder.mkdir(parents=True, exist_ok=True)
    real = clip.read_bytes()
    face = np.asarray(Image.open(photo).convert("RGB"))
    out: dict[str, tuple[Path, str]] = {}
    put = _writer(folder, out)
    put("zero-byte.mp4", b"", "empty file")
    put("garbage.mp4", RNG.integers(0, 256, 20000, np.uint8).tobytes(), "not a readable video")
    put("text-as-video.mp4", b"not a video\n" * 500, "not a readable video")
    put("png-as-video.mp4", encoded(Image.open(photo), "PNG"), "consecutive frames")
    put("truncated-head.mp4", real[: len(real) // 4], "not a readable video")
    put("header-only.mp4", real[:64], "not a readable video")
    blank = [np.full((120, 160, 3), 10 * k, np.uint8) for k in range(12)]
    out["no-face.avi"] = (write_video(folder / "no-face.avi", blank), "no face found")
    three = [face.copy() for _ in range(3)]
    out["three-frames.avi"] = (
        write_video(folder / "three-frames.avi", three),
        "consecutive frames",
    )
    out["missing.mp4"] = (folder / "missing.mp4", "not found")
    (folder / "a-folder.mp4").mkdir()
    out["a-folder.mp4"] = (folder / "a-folder.mp4", "is a folder")
    tiny = [np.full((2, 2, 3), 128, np.uint8) for _ in range(10)]
    out["two-pixel.avi"] = (write_video(folder / "two-pixel.avi", tiny), "no face found")
    assert sorted(out) == sorted(VIDEO_NAMES)
    return out


# -- checkpoints ---------------------------------------------------------------------------------


class Exploit:
    """Unpickling this calls ``open(marker, "w")``: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


CHECKPOINT_NAMES = [
    "pickle.pt",
    "pickle.safetensors",
    "torch-save.pth",
    "zero-byte.safetensors",
    "truncated.safetensors",
    "bit-flipped.safetensors",
    "foreign.safetensors",
    "bad-json.safetensors",
    "future-version.safetensors",
    "nan-weights.safetensors",
    "inf-weights.safetensors",
    "integer-weights.safetensors",
    "wider-config.safetensors",
    "missing-tensor.safetensors",
    "no-config.safetensors",
    "bad-config-type.safetensors",
    "empty-run",
    "missing.safetensors",
]


def checkpoint_corpus(folder: Path, good: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected error fragment) built from the valid checkpoint ``good``."""
    import torch
    from safetensors.torch import save_file

    from mfsr.train.checkpoint import read_checkpoint, save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    tensors, meta = read_checkpoint(good)
    out: dict[str, tuple[Path, str]] = {}
    put = _writer(folder, out)
    put("pickle.pt", pickle.dumps({"model": Exploit(marker)}), "not a readable safetensors")
    put("pickle.safetensors", pickle.dumps(Exploit(marker)), "not a readable safetensors")
    buf = io.BytesIO()
    torch.save({"model": Exploit(marker)}, buf)
    put("torch-save.pth", buf.getvalue(), "not a readable safetensors")
    put("zero-byte.safetensors", b"", "not a readable safetensors")
    put("truncated.safetensors", data[: len(data) // 2], "not a readable safetensors")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    put("bit-flipped.safetensors", bytes(flipped), "checksum mismatch")
    save_file({"w": torch.zeros(3)}, str(folder / "foreign.safetensors"))
    out["foreign.safetensors"] = (folder / "foreign.safetensors", "without mfsr metadata")
    save_file({"w": torch.zeros(3)}, str(folder / "bad-json.safetensors"), metadata={"mfsr": "{"})
    out["bad-json.safetensors"] = (folder / "bad-json.safetensors", "not valid JSON")
    newer = folder / "future-version.safetensors"
    save_file(
        {"w": torch.zeros(3)},
        str(newer),
        metadata={"mfsr": json.dumps({"format": "mfsr-checkpoint", "format_version": 99})},
    )
    out["future-version.safetensors"] = (newer, "format version 99")

    def variant(name: str, fate: str, change) -> None:
        t, m = {k: v.clone() for k, v in tensors.items()}, json.loads(json.dumps(meta))
        change(t, m)
        save_checkpoint(folder / name, t, m)
        out[name] = (folder / name, fate)

    first = next(k for k in tensors if k.startswith("model/") and tensors[k].is_floating_point())
    variant(
        "nan-weights.safetensors",
        "non-finite",
        lambda t, m: t[first].view(-1)[0:1].fill_(float("nan")),
    )
    variant(
        "inf-weights.safetensors",
        "non-finite",
        lambda t, m: t[first].view(-1)[0:1].fill_(float("inf")),
    )
    variant(  # int weights would be cast on loading: a model that runs and outputs garbage
        "integer-weights.safetensors",
        "wrong type",
        lambda t, m: t.update({first: (t[first] * 100).round().to(torch.int64)}),
    )
    variant(
        "wider-config.safetensors",
        "do not match the model config",
        lambda t, m: m["model_config"].update(width=m["model_config"]["width"] * 2),
    )
    variant(
        "missing-tensor.safetensors", "do not match the model config", lambda t, m: t.pop(first)
    )
    variant("no-config.safetensors", "no model config", lambda t, m: m.pop("model_config"))
    variant(
        "bad-config-type.safetensors",
        "model_config",
        lambda t, m: m["model_config"].update(width="wide"),
    )
    (folder / "empty-run").mkdir()
    out["empty-run"] = (folder / "empty-run", "without checkpoints")
    out["missing.safetensors"] = (folder / "missing.safetensors", "not found")
    assert sorted(out) == sorted(CHECKPOINT_NAMES)
    return out
