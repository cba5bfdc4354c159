"""The web app behind ``mfsr serve``: a page and a small JSON API over a :class:`Workspace`.

Routes (``{id}``: a clip id the server generated; ``{k}``: a window index):

* ``GET /``: the page; ``GET /static/...``: its script and style (package data, nothing else);
* ``GET /api/info``: the model's name and geometry, the upload limit;
* ``POST /api/clips?name=NAME``: the clip's bytes as the request body -> ``{"id": ...}``;
* ``GET /api/clips/{id}``: state, progress, and when ready the timeline of windows;
* ``POST /api/clips/{id}/cancel``: stop its analysis;
* ``GET /api/clips/{id}/windows/{k}/{method}.png``: a method's face (``lr``, ``bicubic``,
  ``classical``, ``model``, ``model_flip``), an input frame (``frame0``...) or the ``sheet``;
* ``GET /api/clips/{id}/windows/{k}/record.json``: the case-file record.

Errors are JSON ``{"error": "..."}`` with a 4xx status. Bound to a loopback address the server
accepts only requests whose ``Host`` is that address (no DNS rebinding); on any other address
every request needs the ``token`` printed at start (``?token=`` once, then a cookie).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from mfsr.errors import MfsrError
from mfsr.serve.workspace import VIDEO_SUFFIXES, Clip, Workspace

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
COOKIE = "mfsr_token"


@dataclass(frozen=True)
class Settings:
    """What every handler needs: the clips, the accepted ``Host`` headers on loopback, the
    token required on any other address (None on loopback), the largest upload in bytes."""

    workspace: Workspace
    hosts: frozenset[str]
    token: str | None
    max_bytes: int


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def index(request: Request) -> Response:
    response = FileResponse(STATIC / "index.html", media_type="text/html")
    token = _settings(request).token
    if token is not None:
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:  # a fixed list: no path from the client reaches the disk
        return _error(404, "no such file")
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name])


async def info(request: Request) -> Response:
    s = _settings(request)
    e = s.workspace.enhancer
    return JSONResponse(
        {"model": e.label, "scale": e.scale, "n_frames": e.n_frames, "max_bytes": s.max_bytes}
    )


async def upload(request: Request) -> Response:
    s = _settings(request)
    name = Path(request.query_params.get("name", "clip")).name[:200] or "clip"
    if Path(name).suffix.lower() not in VIDEO_SUFFIXES:
        return _error(415, f"{name}: not a video file name (expected {', '.join(VIDEO_SUFFIXES)})")
    limit = f"the {s.max_bytes / 1e6:.0f} MB limit"
    declared = int(request.headers.get("content-length") or 0)
    if declared > s.max_bytes:  # refused before reading the body
        return _error(413, f"{name}: {declared / 1e6:.0f} MB, over {limit}")
    clip_id, path = s.workspace.new_upload()
    size = 0
    try:
        with open(path, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > s.max_bytes:
                    raise ValueError
                out.write(chunk)
    except ValueError:
        path.unlink(missing_ok=True)
        return _error(413, f"{name}: over {limit}")
    except OSError as exc:
        path.unlink(missing_ok=True)
        return _error(507, f"{name}: could not be stored ({exc.strerror or exc})")
    if size == 0:
        path.unlink(missing_ok=True)
        return _error(400, f"{name}: the file is empty")
    clip = await run_in_threadpool(s.workspace.add, clip_id, name, path)
    return JSONResponse({"id": clip.id})


def _clip(request: Request) -> Clip | None:
    try:
        return _settings(request).workspace.get(request.path_params["id"])
    except KeyError:
        return None


async def clips(request: Request) -> Response:
    return JSONResponse([c.summary() for c in list(_settings(request).workspace.clips.values())])


async def status(request: Request) -> Response:
    clip = _clip(request)
    return _error(404, "no such clip") if clip is None else JSONResponse(clip.summary())


async def cancel(request: Request) -> Response:
    clip = _clip(request)
    if clip is None:
        return _error(404, "no such clip")
    return JSONResponse(_settings(request).workspace.cancel(clip.id).summary())


async def window_file(request: Request) -> Response:
    workspace, clip = _settings(request).workspace, _clip(request)
    if clip is None:
        return _error(404, "no such clip")
    index, what = request.path_params["k"], request.path_params["what"]
    try:
        if what == "record.json":
            text = await run_in_threadpool(workspace.record, clip, index)
            return Response(text, media_type="application/json")
        faces = await run_in_threadpool(workspace.faces, clip, index)
    except KeyError:
        return _error(404, f"no window {index} in {clip.name}")
    except MfsrError as exc:
        return _error(409, str(exc))
    key = what.removesuffix(".png")
    if not what.endswith(".png") or key not in faces:
        return _error(404, f"no image {what!r}")
    return Response(faces[key], media_type="image/png")


async def guard(request: Request, call_next):
    """Refuse a request with the wrong ``Host`` (loopback) or without the token."""
    s = _settings(request)
    if s.token is None:
        allowed = request.headers.get("host", "") in s.hosts
    else:
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        allowed = hmac.compare_digest(given, s.token)
    if not allowed:
        return _error(403, "forbidden: open the address printed by `mfsr serve` (with its token)")
    return await call_next(request)


ROUTES = [
    Route("/", index),
    Route("/static/{name}", static),
    Route("/api/info", info),
    Route("/api/clips", clips, methods=["GET"]),
    Route("/api/clips", upload, methods=["POST"]),
    Route("/api/clips/{id}", status),
    Route("/api/clips/{id}/cancel", cancel, methods=["POST"]),
    Route("/api/clips/{id}/windows/{k:int}/{what}", window_file),
]


def create_app(
    workspace: Workspace, *, hosts: set[str], token: str | None, max_bytes: int
) -> Starlette:
    """The app over ``workspace`` (see :class:`Settings` for the other arguments)."""
    app = Starlette(routes=ROUTES, middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)])
    app.state.settings = Settings(workspace, frozenset(hosts), token, max_bytes)
    return app
