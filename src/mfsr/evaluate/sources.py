"""Where evaluated images come from: the test set (HR truth) and the outputs to score.

Outputs come from a learned model (checkpoint or run folder), a baseline (``bicubic``,
``classical``) or a folder of images made by any other method (``<sample id>.<ext>``). Every
sample that cannot be scored is *excluded with a reason* (:class:`Exclusion`), never dropped
silently; problems that concern the whole run (no samples, a model of the wrong scale, an empty
outputs folder) are one-line :class:`~mfsr.errors.MfsrError`\\ s.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfsr.config import to_dict
from mfsr.data.dataset import SequenceDataset
from mfsr.data.images import IMAGE_SUFFIXES, read_rgb
from mfsr.data.video_folder import SETTINGS_NAME
from mfsr.errors import BadArgument, DataError, MfsrError
from mfsr.metrics.pixel import to_uint8_images
from mfsr.models import ModelConfig, build_model

#: Files that mark an mfsr dataset root (``mfsr data build``, ``mfsr data from-video``).
ROOT_FILES = ("dataset.json", SETTINGS_NAME)


@dataclass(frozen=True)
class Exclusion:
    """A sample left out of the averages: its id, a short reason category and the details."""

    id: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "reason": self.reason, "detail": self.detail}


@dataclass
class Sample:
    """A readable test sample: id, LR frames ``(N, 3, h, w)`` in [0, 1], HR ``uint8 (H, W, 3)``."""

    id: str
    frames: torch.Tensor
    hr: np.ndarray


def resolve_test_set(data: str | os.PathLike, split: str = "test") -> Path:
    """``data`` itself, or ``data/<split>`` when ``data`` is an mfsr dataset root, made by
    ``mfsr data build`` or ``mfsr data from-video`` (one without that split is an
    :class:`MfsrError` naming the splits it has)."""
    data = Path(data)
    if not data.is_dir():
        raise MfsrError(f"{data}: test set folder not found")
    if any((data / name).is_file() for name in ROOT_FILES):  # the split must be there
        if (data / split).is_dir():
            return data / split
        have = sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise BadArgument(
            f"{data}: this dataset has no '{split}' split (it has: {', '.join(have) or 'none'}); "
            "choose one with `split`"
        )
    return data


def open_test_set(
    data: str | os.PathLike, split: str = "test", limit: int | None = None
) -> tuple[SequenceDataset, list[int], list[Exclusion], int]:
    """The samples to evaluate: ``(dataset, indices, exclusions, claimed)``.

    Samples that the dataset listing skipped (e.g. no HR target) and samples whose number of
    LR frames differs from the most common one are exclusions. ``limit``
    keeps the first ``limit`` usable samples (by id); ``claimed`` is then ``limit``.
    """
    folder = resolve_test_set(data, split)
    try:
        dataset = SequenceDataset(folder, n_frames=None, require_hr=True)
    except DataError as exc:
        raise MfsrError(f"{exc} (evaluation needs samples with an HR target)") from None
    exclusions = [
        Exclusion(Path(w).name, "not a usable sample", f"{w}: {r}") for w, r in dataset.skipped
    ]
    # a sample with another frame count than the rest (a lost or stray frame) is excluded,
    # not scored on a different input than the others
    counts = Counter(len(s.lr) for s in dataset.samples)
    n_frames = max(counts, key=lambda n: (counts[n], n))
    indices = []
    for index, sample in enumerate(dataset.samples):
        if len(sample.lr) == n_frames:
            indices.append(index)
        else:
            where = sample.lr[0].parent
            detail = f"{where}: has {len(sample.lr)} LR frames, the other samples have {n_frames}"
            exclusions.append(Exclusion(sample.id, "wrong number of frames", detail))
    if limit is not None:
        if limit < 1:
            raise BadArgument(f"`limit` must be >= 1, got {limit}")
        indices = indices[:limit]
        exclusions = []
    claimed = len(indices) + len(exclusions)
    return dataset, indices, exclusions, claimed


def read_samples(dataset: SequenceDataset, indices: list[int]) -> Iterator[Sample | Exclusion]:
    """Read each sample; an unreadable one yields an :class:`Exclusion` (reason names the file)."""
    for index in indices:
        sample_id = dataset.samples[index].id
        try:
            item = dataset[index]
        except DataError as exc:
            yield Exclusion(sample_id, "sample unreadable", str(exc))
            continue
        # back to the file's 8-bit values (exact: the dataset divided them by 255); NumPy,
        # because small torch ops here wait for torch's thread pool to wake up
        hr = np.rint(item["hr"].numpy().transpose(1, 2, 0) * 255.0).astype(np.uint8)
        yield Sample(sample_id, item["frames"], np.ascontiguousarray(hr))


class ModelOutputs:
    """Super-resolves batches of samples with a model (``torch.no_grad``, eval mode)."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def __call__(self, samples: list[Sample]) -> list[np.ndarray]:
        """``uint8 (H, W, 3)`` outputs (quantised by rounding) for ``samples`` of equal shape."""
        frames = torch.stack([s.frames for s in samples]).to(self.device)
        try:
            with torch.no_grad():
                out = self.model(frames)
        except ValueError as exc:  # frame count / size checks of the models
            raise MfsrError(f"the model cannot process sample {samples[0].id}: {exc}") from None
        if not torch.isfinite(out).all():
            raise MfsrError(
                f"the model produced NaN or infinite values (batch starting at sample "
                f"{samples[0].id}): a diverged or corrupt model; nothing is scored"
            )
        images = to_uint8_images(out)
        hr_shape = samples[0].hr.shape
        if images.shape[1:] != hr_shape:
            h, w = images.shape[1:3]
            raise MfsrError(
                f"the model outputs {w}x{h} images but the HR targets are {hr_shape[1]}x"
                f"{hr_shape[0]} (sample {samples[0].id}): wrong scale for this test set?"
            )
        return list(images)


def baseline_model(name: str, first: Sample) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A baseline (``bicubic`` or ``classical``) sized for the test set (scale and frame count
    read from its first sample); returns ``(model, model_config_dict)``."""
    if name not in ("bicubic", "classical"):
        raise BadArgument(f"`baseline` must be 'bicubic' or 'classical', got {name!r}")
    n, _, h, w = first.frames.shape
    if first.hr.shape[0] % h or first.hr.shape[0] // h != first.hr.shape[1] // w:
        raise MfsrError(f"sample {first.id}: HR is not an integer multiple of the LR size")
    try:
        cfg = ModelConfig(name=name, scale=first.hr.shape[0] // h, n_frames=n)
    except ValueError as exc:
        raise BadArgument(f"`baseline` {name}: {exc} (from sample {first.id})") from None
    return build_model(cfg), to_dict(cfg)


class FolderOutputs:
    """Outputs of another method: ``<folder>/<sample id>.<ext>`` (any image suffix, one level).

    Raises :class:`MfsrError` when the folder is missing or holds no image at all.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise MfsrError(f"{self.folder}: outputs folder not found")
        self.files: dict[str, list[Path]] = {}
        for path in sorted(self.folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                self.files.setdefault(path.stem, []).append(path)
        if not self.files:
            raise MfsrError(
                f"{self.folder}: no images in the outputs folder (expected <sample id>.png files)"
            )
        self.used: set[str] = set()

    def get(self, sample: Sample) -> np.ndarray | Exclusion:
        """The output for ``sample``, or the reason it cannot be used."""
        paths = self.files.get(sample.id, [])
        self.used.add(sample.id)
        if not paths:
            return Exclusion(sample.id, "output missing", f"no {sample.id}.png in {self.folder}")
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            return Exclusion(sample.id, "output ambiguous", f"several files: {names}")
        try:
            image = read_rgb(paths[0])
        except DataError as exc:
            return Exclusion(sample.id, "output unreadable", str(exc))
        if image.shape != sample.hr.shape:
            h, w = image.shape[:2]
            return Exclusion(
                sample.id,
                "output wrong size",
                f"{paths[0]}: {w}x{h}, the HR target is {sample.hr.shape[1]}x{sample.hr.shape[0]}",
            )
        return image

    def unmatched(self) -> list[str]:
        """File names that matched no evaluated sample id."""
        return [p.name for stem, ps in self.files.items() if stem not in self.used for p in ps]
