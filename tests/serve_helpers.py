"""A real `mfsr serve` process for the serve tests, and a small HTTP client for its API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from helpers import VIDEOS

CLIP = VIDEOS / "Input_00002.mp4"


class Served:
    """``mfsr serve --port 0 ...`` in a subprocess whose temporary folder is ``tmp``."""

    def __init__(self, tmp: Path, *args: str):
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mfsr", "serve", "--port", "0", "--device", "cpu", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError("mfsr serve exited:\n" + "".join(self.lines))
            self.lines.append(line)
            found = re.search(r"open (http://\S+)", line)
            if found:
                self.address = found.group(1)
                self.base = re.match(r"http://[^/]+", self.address).group(0)  # type: ignore[union-attr]
                return
        raise RuntimeError("mfsr serve printed no address:\n" + "".join(self.lines))

    def request(self, path: str, data: bytes | None = None, headers: dict | None = None):
        """(status, body bytes, headers) of a request; errors are answers too."""
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def json(self, path: str, data: bytes | None = None) -> dict:
        status, body, _ = self.request(path, data)
        assert status == 200, (status, body)
        return json.loads(body)

    def upload(self, name: str, data: bytes) -> str:
        return self.json(f"/api/clips?name={urllib.request.quote(name)}", data)["id"]

    def wait(self, clip_id: str, timeout: float = 300) -> dict:
        """The clip's summary once its analysis has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            clip = self.json(f"/api/clips/{clip_id}")
            if clip["state"] not in ("queued", "running"):
                return clip
            time.sleep(0.3)
        raise TimeoutError(clip_id)

    def stop(self, sig: int = signal.SIGINT) -> str:
        """Stop the server; its remaining output."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=60)
        return "".join(self.lines) + (out or "")
