"""Failed face recognition (FFR) with dlib, fully offline; HR descriptors cached on disk.

Two criteria per output image (``uint8 (H, W, 3)`` RGB), both reported:

* **no face**: dlib's HOG detector, upsampling the image once (:data:`UPSAMPLE`, the default of
  the ``face_recognition`` library), finds no box scoring at least ``min_score``
  (:data:`MIN_SCORE` = 0.0: dlib's own threshold, the one ``face_recognition`` applies, so the
  count is comparable with benchmarks built on that library).
* **identity**: the 128-d dlib descriptor of the output's face is farther than
  :data:`~mfsr.faces.SAME_PERSON_DISTANCE` (0.6, dlib's documented threshold) from the
  descriptor of the true HR face. An output without a face fails this criterion too. Samples
  whose HR image has no face cannot be judged and are left out of the identity criterion
  (counted).

When several boxes qualify, the one nearest the image centre is described
(:func:`mfsr.faces.central_face`): samples are face-centred crops.

torch is imported only when a descriptor is computed (dlib's recognizer runs in PyTorch:
:func:`mfsr.faces.face_descriptor`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfsr.faces import SAME_PERSON_DISTANCE, central_face, detect_faces, face_descriptor

#: HOG detector upsampling for FFR (``face_recognition``'s default; finds faces from ~40 px).
UPSAMPLE = 1
#: Minimum detection score for "a face was found" (dlib's / face_recognition's threshold).
MIN_SCORE = 0.0
#: Default identity threshold on the descriptor distance.
THRESHOLD = SAME_PERSON_DISTANCE
#: Version of the face analysis; part of every cache key (bump when the protocol changes).
ANALYSIS_VERSION = 1
#: Environment variable naming mfsr's cache folder (default ``~/.cache/mfsr``).
CACHE_ENV = "MFSR_CACHE"


@dataclass(frozen=True)
class FaceAnalysis:
    """What dlib sees in one image.

    ``n_faces``: boxes scoring >= the minimum score. ``score``: score of the described (central)
    face, ``nan`` if none. ``box``: its (left, top, right, bottom) in pixels, or None.
    ``descriptor``: float64 ``(128,)`` or None when no face was found.
    """

    n_faces: int
    score: float
    box: tuple[float, float, float, float] | None
    descriptor: np.ndarray | None

    @property
    def found(self) -> bool:
        return self.descriptor is not None


def analyze_face(
    image: np.ndarray, min_score: float = MIN_SCORE, upsample: int = UPSAMPLE
) -> FaceAnalysis:
    """Detect faces in ``image`` (``uint8 (H, W, 3)`` RGB) and describe the central one.

    Timings: docs/benchmarks.md, "Component timings".
    """
    faces = detect_faces(image, upsample=upsample, min_score=min_score)
    face = central_face(faces, image.shape[1], image.shape[0])
    if face is None:
        return FaceAnalysis(0, float("nan"), None, None)
    box = (face.left, face.top, face.right, face.bottom)
    return FaceAnalysis(len(faces), face.score, box, face_descriptor(image, face))


def descriptor_distance(a: FaceAnalysis, b: FaceAnalysis) -> float:
    """Euclidean distance between the two descriptors; ``nan`` if either has no face."""
    if a.descriptor is None or b.descriptor is None:
        return float("nan")
    return float(np.linalg.norm(a.descriptor - b.descriptor))


# --- Cache of HR analyses ------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$MFSR_CACHE`` if set, else ``$XDG_CACHE_HOME/mfsr``, else ``~/.cache/mfsr``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mfsr"


def cache_key(image: np.ndarray, min_score: float = MIN_SCORE, upsample: int = UPSAMPLE) -> str:
    """SHA-256 (hex) of the image content (shape + uint8 pixels) and the analysis settings."""
    digest = hashlib.sha256()
    digest.update(f"faces-v{ANALYSIS_VERSION}|{min_score!r}|{upsample}|{image.shape}|".encode())
    digest.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    return digest.hexdigest()


class DescriptorCache:
    """Face analyses of HR images on disk: ``<root>/descriptors/<key>.npz`` (one small file per
    image, written atomically). ``root`` defaults to :func:`default_cache_dir`. Unreadable
    entries are treated as missing (and rewritten)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.folder = self.root / "descriptors"
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def get(self, key: str) -> FaceAnalysis | None:
        path = self.path(key)
        try:
            with np.load(path) as data:
                analysis = _from_arrays(data)
        except (OSError, ValueError, KeyError):
            self.misses += 1
            return None
        self.hits += 1
        return analysis

    def put(self, key: str, analysis: FaceAnalysis) -> None:
        """Store ``analysis``; a cache folder that cannot be written is silently skipped (the
        evaluation does not depend on the cache)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{os.getpid()}.tmp.npz"
            np.savez(tmp, **_to_arrays(analysis))
            os.replace(tmp, self.path(key))
        except OSError:
            return


def _to_arrays(a: FaceAnalysis) -> dict[str, Any]:
    return {
        "n_faces": np.array(a.n_faces),
        "score": np.array(a.score),
        "box": np.array(a.box if a.box is not None else [np.nan] * 4, dtype=np.float64),
        "descriptor": a.descriptor if a.descriptor is not None else np.zeros(0),
    }


def _from_arrays(data: Any) -> FaceAnalysis:
    descriptor = np.asarray(data["descriptor"], dtype=np.float64)
    box = np.asarray(data["box"], dtype=np.float64)
    found = descriptor.shape == (128,)
    if not found and descriptor.size:
        raise ValueError("bad descriptor shape")
    return FaceAnalysis(
        int(data["n_faces"]),
        float(data["score"]),
        tuple(float(v) for v in box) if found else None,  # type: ignore[arg-type]
        descriptor if found else None,
    )


def cached_analysis(
    image: np.ndarray,
    cache: DescriptorCache | None,
    min_score: float = MIN_SCORE,
    upsample: int = UPSAMPLE,
) -> FaceAnalysis:
    """:func:`analyze_face` through ``cache`` (None: no cache)."""
    if cache is None:
        return analyze_face(image, min_score, upsample)
    key = cache_key(image, min_score, upsample)
    hit = cache.get(key)
    if hit is not None:
        return hit
    analysis = analyze_face(image, min_score, upsample)
    cache.put(key, analysis)
    return analysis


# --- Aggregates ----------------------------------------------------------------------------------


def identity_failures(
    distances: np.ndarray, sr_found: np.ndarray, threshold: float = THRESHOLD
) -> np.ndarray:
    """Per sample (bool ``(B,)``): the output fails the identity criterion at ``threshold``
    (no face in the output, or descriptor distance > threshold). Only meaningful where the HR
    has a face."""
    distances = np.asarray(distances, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        far = distances > threshold
    return ~np.asarray(sr_found, dtype=bool) | far


def verification_curve(
    distances: np.ndarray,
    sr_found: np.ndarray,
    hr_found: np.ndarray,
    thresholds: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Identity failure rate against the distance threshold.

    Over the samples whose HR has a face: the fraction whose output has no face or a descriptor
    farther than ``t`` from the HR's. ``thresholds`` default: 0 to 1.2 in steps of 0.01.
    Returns ``(thresholds, rates)``, both float64 ``(T,)``; rates are ``nan`` if no HR has a face.
    """
    if thresholds is None:
        thresholds = np.round(np.arange(0, 121) * 0.01, 2)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    hr_found = np.asarray(hr_found, dtype=bool)
    d = np.asarray(distances, dtype=np.float64)[hr_found]
    found = np.asarray(sr_found, dtype=bool)[hr_found]
    if d.size == 0:
        return thresholds, np.full(thresholds.shape, np.nan)
    d = np.where(found, d, np.inf)
    rates = (d[None, :] > thresholds[:, None]).mean(axis=1)
    return thresholds, rates


def ffr_summary(
    distances: np.ndarray,
    sr_found: np.ndarray,
    hr_found: np.ndarray,
    threshold: float = THRESHOLD,
) -> dict[str, Any]:
    """Counts and rates of both FFR criteria (plain JSON-able dict).

    ``no_face``: outputs without a face, over all ``n`` samples (and, for context, HR images
    without a face). ``identity``: over the ``n_judged`` samples whose HR has a face, outputs
    without a face plus outputs farther than ``threshold``; ``far`` counts the latter alone
    (over the outputs that have a face). Distances: mean/median over the pairs with both faces.
    """
    sr_found = np.asarray(sr_found, dtype=bool)
    hr_found = np.asarray(hr_found, dtype=bool)
    distances = np.asarray(distances, dtype=np.float64)
    n = int(sr_found.size)
    judged = hr_found
    fails = identity_failures(distances, sr_found, threshold) & judged
    both = judged & sr_found
    far = both & (np.nan_to_num(distances, nan=-1.0) > threshold)
    pair_d = distances[both]
    return {
        "n": n,
        "no_face": {
            "count": int(np.count_nonzero(~sr_found)),
            "rate": float(np.mean(~sr_found)) if n else float("nan"),
            "hr_no_face": int(np.count_nonzero(~hr_found)),
        },
        "identity": {
            "threshold": float(threshold),
            "n_judged": int(np.count_nonzero(judged)),
            "count": int(np.count_nonzero(fails)),
            "rate": float(fails.sum() / judged.sum()) if judged.any() else float("nan"),
            "far": int(np.count_nonzero(far)),
            "far_of": int(np.count_nonzero(both)),
        },
        "distance": {
            "n": int(pair_d.size),
            "mean": float(pair_d.mean()) if pair_d.size else float("nan"),
            "median": float(np.median(pair_d)) if pair_d.size else float("nan"),
        },
    }
