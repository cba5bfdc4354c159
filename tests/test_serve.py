"""`mfsr serve` through its HTTP API, on a real clip: a server process, real uploads, the
shipped model. The page itself is driven by a browser in test_serve_browser.py."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket

import cv2
import numpy as np
import pytest

from mfsr.shipped import SHIPPED
from serve_helpers import CLIP, Served


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not CLIP.is_file():
        pytest.skip(f"shared data not found at {CLIP} (CI always has ../shared/data)")
    server = Served(tmp_path_factory.mktemp("serve"), "--max-upload-mb", "1")
    yield server
    server.stop()


def png(body: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_a_real_clip_gives_every_method_a_sheet_and_a_record(served):
    data = CLIP.read_bytes()
    clip = served.wait(served.upload(CLIP.name, data))
    assert clip["state"] == "ready", clip
    assert clip["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(clip["windows"]) >= 10 and clip["best"]
    assert "shrunk" in clip["note"]  # a 126 px face: simulated low resolution, said so
    k = clip["best"][0]
    base = f"/api/clips/{clip['id']}/windows/{k}"
    for method in ("lr", "bicubic", "classical", "model", "model_flip"):
        status, body, headers = served.request(f"{base}/{method}.png")
        assert status == 200 and headers["content-type"] == "image/png"
        assert png(body).shape == (128, 128, 3), method
    assert png(served.request(f"{base}/frame6.png")[1]).shape == (32, 32, 3)
    assert png(served.request(f"{base}/sheet.png")[1]).shape[1] > 5 * 128
    record = served.json(f"{base}/record.json")
    window = clip["windows"][k]
    assert record["input"]["path"] == CLIP.name
    assert record["input"]["sha256"] == clip["sha256"]
    assert record["windows"][0]["frames"] == window["frames"]
    assert record["windows"][0]["reference_frame"] == window["reference_frame"]
    assert record["model"]["run_name"] == "quick-identity" and record["scale"] == 4
    assert record["model"]["file_sha256"] == SHIPPED["quick-identity-x4"].sha256
    assert set(record["methods"]) == {"lr", "bicubic", "classical", "model", "model_flip"}
    assert record["mfsr_version"] and record["input"]["downscale"] < 1.0
    assert served.request(f"/api/clips/{clip['id']}/windows/999/model.png")[0] == 404
    assert served.request(f"{base}/../../../etc/passwd")[0] == 404


def test_bad_clips_get_a_message_and_the_server_keeps_serving(served):
    text = served.wait(served.upload("notes.mp4", b"this is a text file, not a video\n" * 20))
    assert text["state"] == "failed" and "not a readable video" in text["message"]
    assert text["message"].startswith("notes.mp4") and "mfsr-serve-" not in text["message"]
    cut = served.wait(served.upload("cut.mp4", CLIP.read_bytes()[:60_000]))
    assert cut["state"] == "failed" and cut["message"]
    status, body, _ = served.request("/api/clips?name=notes.txt", b"hello")
    assert status == 415 and "not a video file name" in json.loads(body)["error"]
    # too big: refused from the declared length, before the body is read
    host = served.base.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=60)
    conn.putrequest("POST", "/api/clips?name=big.mp4")
    conn.putheader("Content-Length", "1200000")
    conn.endheaders()
    reply = conn.getresponse()
    assert reply.status == 413 and "1 MB limit" in json.loads(reply.read())["error"]
    conn.close()
    assert served.request("/api/clips?name=empty.mp4", b"")[0] == 400
    assert served.request("/api/clips/nosuch")[0] == 404
    assert served.request("/static/../app.py")[0] == 404
    # still serving: the page, and a good clip after the bad ones
    assert served.request("/")[0] == 200
    assert served.wait(served.upload("again.mp4", CLIP.read_bytes()))["state"] == "ready"


def test_cancel_stops_an_analysis(served):
    first = served.upload("one.mp4", CLIP.read_bytes())
    second = served.upload("two.mp4", CLIP.read_bytes())
    served.json(f"/api/clips/{second}/cancel", b"")
    served.json(f"/api/clips/{first}/cancel", b"")
    assert served.wait(second)["state"] == "cancelled"
    assert served.wait(first)["state"] in ("cancelled", "ready")  # it may have just finished


def test_other_hosts_and_tokens(served, tmp_path):
    # on loopback: only requests addressed to loopback (a DNS-rebinding page is refused)
    assert served.request("/api/clips", headers={"Host": "evil.example:80"})[0] == 403
    # on another address: the printed token, once in the URL, then as a cookie
    other = Served(tmp_path / "other", "--host", "127.0.0.2")
    try:
        assert "token=" in other.address
        assert other.request("/")[0] == 403
        assert other.request("/api/clips?token=wrong")[0] == 403
        status, _, headers = other.request(other.address[len(other.base) :])
        assert status == 200
        cookie = headers["set-cookie"].split(";")[0]
        assert other.request("/api/clips", headers={"Cookie": cookie})[0] == 200
    finally:
        other.stop()
    # on every address: the printed address names this machine (it once said 0.0.0.0)
    every = Served(tmp_path / "every", "--host", "0.0.0.0")
    try:
        assert every.base == f"http://{socket.gethostname()}:{every.base.rsplit(':', 1)[1]}"
        assert "listening on every address" in every.lines[-1]
    finally:
        every.stop()


def test_uploads_are_deleted_on_exit(tmp_path):
    if not CLIP.is_file():
        pytest.skip(f"shared data not found at {CLIP}")
    server = Served(tmp_path / "t")
    server.wait(server.upload(CLIP.name, CLIP.read_bytes()))
    assert next((tmp_path / "t").iterdir()).name.startswith("mfsr-serve-")
    output = server.stop()
    assert server.proc.returncode in (0, 130), output
    assert list((tmp_path / "t").iterdir()) == [], output
    assert "Traceback" not in output


def test_a_workdir_keeps_the_uploads_and_the_results(tmp_path):
    if not CLIP.is_file():
        pytest.skip(f"shared data not found at {CLIP}")
    work = tmp_path / "case"
    server = Served(tmp_path / "t", "--workdir", str(work))
    clip_id = server.upload(CLIP.name, CLIP.read_bytes())
    clip = server.wait(clip_id)
    k = clip["best"][0]
    model = server.request(f"/api/clips/{clip_id}/windows/{k}/model.png")[1]
    record = server.json(f"/api/clips/{clip_id}/windows/{k}/record.json")
    server.stop()
    kept = work / clip_id
    assert (work / f"{clip_id}.video").read_bytes() == CLIP.read_bytes()
    assert json.loads((kept / "clip.json").read_text())["windows"] == clip["windows"]
    window = kept / f"window_{k:04d}"
    assert (window / "model.png").read_bytes() == model
    assert json.loads((window / "record.json").read_text()) == record
    assert {p.name for p in window.iterdir()} >= {"lr.png", "classical.png", "sheet.png"}
    assert list((tmp_path / "t").iterdir()) == []  # nothing in the private temporary folder
