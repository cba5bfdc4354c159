"""Torch datasets of frame sequences.

Both datasets return a dict per sample:

* ``frames``: float32 tensor ``(N, 3, h, w)`` in [0, 1] (frame ``N // 2`` is the reference);
* ``hr``: float32 tensor ``(3, H, W)`` in [0, 1] (absent for LR-only samples);
* ``id``: the sample id (str); ``meta``: the sample's metadata (dict).

Use :func:`collate` with a DataLoader: it stacks tensors and keeps ids and metadata as lists.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mfsr.data.degrade import Crop, DegradationConfig, synthesize_sequence
from mfsr.data.device_synthesis import plan_sequence, plan_shapes
from mfsr.data.folders import NATIVE, FolderLayout, find_samples
from mfsr.data.images import read_rgb
from mfsr.data.sample import load_sample
from mfsr.errors import DataError


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    # Converted in numpy: torch's own uint8 -> float path stalled 10-20 ms now and then on 2 cores.
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    return torch.from_numpy(chw / np.float32(255.0))


def stack_frames(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """N uint8 (h, w, 3) frames -> float32 (N, 3, h, w) in [0, 1]."""
    return torch.stack([to_tensor(f) for f in frames])


#: Tensors a sample may carry: frames and HR, or a device-synthesis plan instead
#: (:mod:`mfsr.data.device_synthesis`).
TENSOR_KEYS = ("frames", "hr", "source", "warp", "gauss", "line", "noise", "jpeg", "noise_seed")


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors every sample has (``frames``, ``hr``, or a device-synthesis plan);
    keep ``id`` and ``meta`` as lists."""
    out: dict[str, Any] = {"id": [b["id"] for b in batch], "meta": [b["meta"] for b in batch]}
    for key in TENSOR_KEYS:
        if all(key in b for b in batch):
            out[key] = torch.stack([b[key] for b in batch])
    return out


class SequenceDataset(Dataset):
    """Samples stored on disk (native mfsr layout or an MLFDB-style :class:`FolderLayout`).

    Unusable samples found while listing are skipped and kept in ``self.skipped`` as
    ``(where, reason)``; an empty result is an error. A file that fails to decode at read time
    raises :class:`DataError` naming it.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        layout: FolderLayout = NATIVE,
        n_frames: int | None = None,
        require_hr: bool = True,
    ) -> None:
        self.root = Path(root)
        self.samples, self.skipped = find_samples(self.root, layout, n_frames, require_hr)
        if not self.samples:
            reason = f" ({len(self.skipped)} skipped: {self.skipped[0][1]})" if self.skipped else ""
            raise DataError(f"{self.root}: no usable samples{reason}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        files = self.samples[index]
        frames, hr, meta = load_sample(files)
        item: dict[str, Any] = {"frames": stack_frames(frames), "id": files.id, "meta": meta}
        if hr is not None:
            h, w = frames[0].shape[:2]
            if hr.shape[0] % h or hr.shape[1] % w or hr.shape[0] // h != hr.shape[1] // w:
                raise DataError(
                    f"{files.hr}: HR size {hr.shape[1]}x{hr.shape[0]} is not an integer "
                    f"multiple of the LR size {w}x{h}"
                )
            item["hr"] = to_tensor(hr)
        return item


@dataclass(frozen=True)
class SourceImage:
    """A clean face photo to synthesise sequences from."""

    path: Path
    identity: str
    id: str


class SyntheticSequenceDataset(Dataset):
    """Fresh degraded sequences from clean photos, generated on the fly.

    Sample ``i`` in epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e, i])``: a
    different degradation every epoch, identical for the same (seed, epoch, index) whatever the
    number of loader workers. Several degradation presets may be given: each sample then uses
    one of them, drawn uniformly. Call :meth:`set_epoch` at the start of each epoch (it does not
    reach persistent loader workers: create the loader per epoch, or use :meth:`sample`).
    """

    def __init__(
        self,
        sources: Sequence[SourceImage],
        scale: int,
        n_frames: int,
        hr_size: int,
        degradation: DegradationConfig | Sequence[DegradationConfig],
        seed: int = 0,
        face_crop: int | None = None,
        plan: bool = False,
    ) -> None:
        if not sources:
            raise DataError("no source images to synthesise sequences from")
        if hr_size % scale:
            raise DataError(f"HR size {hr_size} is not divisible by the scale {scale}")
        self.sources = list(sources)
        self.scale, self.n_frames, self.hr_size = scale, n_frames, hr_size
        presets = [degradation] if isinstance(degradation, DegradationConfig) else list(degradation)
        if not presets:
            raise DataError("at least one degradation preset is needed")
        self.degradations, self.seed, self.face_crop = presets, seed, face_crop
        self.epoch = 0
        # plan=True: samples carry the CPU half of device synthesis instead of frames and HR
        self.plan_shapes = None
        if plan:
            self.plan_shapes = plan_shapes(presets, hr_size, scale)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = range(len(self.sources))[index]
        return self.sample(index, (self.epoch, index))

    def sample(self, index: int, key: tuple[int, ...]) -> dict[str, Any]:
        """Sequence from source ``index`` with randomness ``default_rng([seed, *key])``.

        Training streams pass ``key = (epoch, position in epoch)``, so a photo drawn twice in
        one epoch gets two different degradations, independent of workers and processes.
        """
        src = self.sources[index]
        image = read_rgb(src.path)
        crop = Crop.centred(image.shape[1], image.shape[0], self.face_crop)
        rng = np.random.default_rng([self.seed, *key])
        # With several presets, each sample uses one drawn uniformly (from its own stream).
        choice = 0
        if len(self.degradations) > 1:
            choice = int(
                np.random.default_rng([self.seed, *key, 1]).integers(len(self.degradations))
            )
        preset = self.degradations[choice]
        geometry = (image, crop, self.hr_size, self.scale, self.n_frames, preset, rng)
        if self.plan_shapes is not None:
            tensors, params = plan_sequence(*geometry, self.plan_shapes)
        else:
            frames, hr, params = synthesize_sequence(*geometry)
            tensors = {"frames": stack_frames(frames), "hr": to_tensor(hr)}
        meta = {
            "identity": src.identity,
            "key": list(key),
            "preset": preset.name,
            "degradation": params.to_dict(),
        }
        return {**tensors, "id": src.id, "meta": meta}
