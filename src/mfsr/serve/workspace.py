"""The server's state: uploaded clips, their background analysis, cached results.

Every clip gets a generated id; its upload is stored as ``<folder>/<id>.video`` (no name from
the client is ever used on disk), its results under ``<folder>/<id>/``: ``clip.json``, then
``window_<k>/<method>.png`` and ``record.json`` as the page asks for them. One background
thread analyses clips in turn; a cancelled or failed analysis leaves a message for the page,
never an exception in the server.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfsr.config import write_bytes_atomic
from mfsr.data.images import encode_png
from mfsr.enhance.model import Enhancer
from mfsr.enhance.outputs import rounded
from mfsr.errors import MfsrError
from mfsr.serve.analysis import METHODS, Analysis, analyse, compare, quality, record, sheet
from mfsr.weights import file_sha256

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")


class Cancelled(Exception):
    """Raised inside an analysis whose clip was cancelled."""


@dataclass
class Clip:
    """One uploaded clip and what the page may ask about it."""

    id: str
    name: str
    path: Path
    size: int
    sha256: str
    state: str = "queued"  # queued, running, ready, failed, cancelled
    stage: str = ""
    done: int = 0
    total: int = 0
    message: str | None = None
    analysis: Analysis | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    faces: dict[int, dict[str, bytes]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON for the page: state, progress, the timeline when ready."""
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "state": self.state,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "message": self.message,
        }
        if self.analysis is not None:
            hints = self.analysis.hints
            doc["note"] = self.analysis.note
            doc["fps"] = self.analysis.track.fps
            doc["frames"] = self.analysis.track.n_frames
            doc["windows"] = hints
            doc["best"] = sorted(range(len(hints)), key=lambda k: -quality(hints[k]))[:3]
        return doc


class Workspace:
    """Clips under ``folder`` (created, and deleted by :meth:`close` when ``owned``)."""

    def __init__(self, folder: Path, enhancer: Enhancer, classical: Enhancer, owned: bool):
        self.folder, self.owned = folder, owned
        self.enhancer, self.classical = enhancer, classical
        self.clips: dict[str, Clip] = {}
        self.lock = threading.Lock()  # clips dict and the models (one call at a time)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfsr-analyse")
        folder.mkdir(parents=True, exist_ok=True)

    def new_upload(self) -> tuple[str, Path]:
        """A fresh clip id and the path its bytes go to."""
        clip_id = secrets.token_hex(8)
        return clip_id, self.folder / f"{clip_id}.video"

    def add(self, clip_id: str, name: str, path: Path) -> Clip:
        """Register a finished upload and queue its analysis."""
        clip = Clip(clip_id, name, path, path.stat().st_size, file_sha256(path))
        with self.lock:
            self.clips[clip_id] = clip
        self.pool.submit(self._analyse, clip)
        return clip

    def _analyse(self, clip: Clip) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            if clip.cancel.is_set():
                raise Cancelled
            clip.stage, clip.done, clip.total = stage, done, total

        if clip.cancel.is_set():
            return
        clip.state = "running"
        try:
            clip.analysis = analyse(clip.path, self.enhancer, progress)
            clip.state = "ready"
            self._keep(clip, "clip.json", json.dumps(clip.summary(), indent=1).encode())
        except Cancelled:
            clip.state, clip.message = "cancelled", "cancelled"
        except MfsrError as exc:  # the server's file name means nothing to the user
            clip.state, clip.message = "failed", str(exc).replace(str(clip.path), clip.name)
        except Exception as exc:  # a hostile clip must not take the server down
            clip.state = "failed"
            clip.message = f"{clip.name}: could not be read ({type(exc).__name__}: {exc})"

    def get(self, clip_id: str) -> Clip:
        """The clip, or :class:`KeyError`."""
        with self.lock:
            return self.clips[clip_id]

    def cancel(self, clip_id: str) -> Clip:
        """Stop the clip's analysis (queued or running)."""
        clip = self.get(clip_id)
        clip.cancel.set()
        if clip.state == "queued":
            clip.state, clip.message = "cancelled", "cancelled"
        return clip

    def faces(self, clip: Clip, index: int) -> dict[str, bytes]:
        """PNG bytes of every method for window ``index`` (computed once, then cached)."""
        if clip.analysis is None:
            raise MfsrError(f"{clip.name}: not analysed yet")
        if not 0 <= index < len(clip.analysis.windows):
            raise KeyError(index)
        with self.lock:
            if index not in clip.faces:
                window = clip.analysis.windows[index]
                images = compare(window, self.enhancer, self.classical)
                pngs = {m: encode_png(images[m]) for m in METHODS}
                pngs.update({f"frame{k}": encode_png(f) for k, f in enumerate(window.lr)})
                pngs["sheet"] = encode_png(sheet(images, window, self._title(clip, index)))
                clip.faces[index] = pngs
                for key, data in pngs.items():
                    self._keep(clip, f"window_{index:04d}/{key}.png", data)
            return clip.faces[index]

    def _keep(self, clip: Clip, name: str, data: bytes) -> None:
        """Store a result under ``<folder>/<clip id>/`` (kept with ``--workdir``); a failure
        to store is noted on the clip, and the result is still served from memory."""
        path = self.folder / clip.id / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, data)
        except OSError as exc:
            clip.message = f"results are shown but could not be kept in {self.folder} ({exc})"

    def _title(self, clip: Clip, index: int) -> str:
        hint = clip.analysis.hints[index]  # type: ignore[union-attr]
        when = f"{hint['time_s']:.2f} s" if hint["time_s"] is not None else "?"
        return f"{clip.name}  frame {hint['reference_frame']} ({when})  sha256 {clip.sha256[:12]}"

    def record(self, clip: Clip, index: int) -> str:
        """The export record of window ``index`` as JSON text (see
        :func:`mfsr.serve.analysis.record`), also kept beside the window's images."""
        self.faces(clip, index)
        base = f"{Path(clip.name).stem}_frame{clip.analysis.hints[index]['reference_frame']:06d}"  # type: ignore[union-attr]
        doc = record(
            {"name": clip.name, "sha256": clip.sha256},
            clip.analysis,  # type: ignore[arg-type]
            index,
            self.enhancer,
            {"sheet": f"{base}_sheet.png"},
        )
        doc["classical"] = self.classical.info
        text = json.dumps(rounded(doc), indent=2)
        self._keep(clip, f"window_{index:04d}/record.json", text.encode())
        return text

    def close(self) -> None:
        """Stop the analyses and delete the uploads (when the folder is the server's own)."""
        for clip in list(self.clips.values()):
            clip.cancel.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.owned:
            shutil.rmtree(self.folder, ignore_errors=True)
