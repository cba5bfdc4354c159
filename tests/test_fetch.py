"""`mfsr data fetch` against a local HTTP server on 127.0.0.1 that the test starts, serving a
small LFW-shaped archive the test makes: a whole download, a server that stops mid-file and a
resume, a wrong checksum, no server at all, a hostile archive; and configs naming `lfw`."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import assert_one_line_error, run
from mfsr.data.fetch import fetch_dataset, locate, resolve_source
from mfsr.errors import MfsrError

PEOPLE = ("Ada_Lovelace", "Alan_Turing", "Grace_Hopper")


def make_archive(top: str = "lfw-deepfunneled", extra: tarfile.TarInfo | None = None) -> bytes:
    """A gzipped tar with ``top/<person>/<person>_000k.jpg`` (real JPEGs of random faces)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for person in PEOPLE:
            for k in (1, 2):
                ok, jpg = cv2.imencode(".jpg", rng.integers(0, 255, (250, 250, 3), np.uint8))
                assert ok
                info = tarfile.TarInfo(f"{top}/{person}/{person}_{k:04d}.jpg")
                info.size = len(jpg)
                tar.addfile(info, io.BytesIO(jpg.tobytes()))
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size))
    return buffer.getvalue()


class Server:
    """Serves ``body`` at /lfw.tgz with Range support; ``cut`` bytes: close the connection
    after that many (Content-Length still says the whole). Records the Range headers seen."""

    def __init__(self, body: bytes):
        self.body, self.cut, self.ranges = body, None, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/lfw.tgz":
                    self.send_error(404)
                    return
                start = 0
                owner.ranges.append(self.headers.get("Range"))
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(owner.body) - start))
                self.end_headers()
                end = len(owner.body) if owner.cut is None else owner.cut
                self.wfile.write(owner.body[start:end])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/lfw.tgz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server(make_archive())
    yield s
    s.close()


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_whole_download_lands_where_configs_look(server, tmp_path, monkeypatch):
    folder, fetched = fetch_dataset(
        "lfw", tmp_path / "data", url=server.url, sha256=sha(server.body)
    )
    assert fetched and folder == tmp_path / "data" / "lfw" / "images_deepfunneled"
    assert sorted(p.name for p in folder.iterdir()) == list(PEOPLE)
    assert files_under(tmp_path / "data" / "lfw") == sorted(
        ["fetch.json", "images_deepfunneled"]
        + [f"images_deepfunneled/{p}" for p in PEOPLE]
        + [f"images_deepfunneled/{p}/{p}_000{k}.jpg" for p in PEOPLE for k in (1, 2)]
    )
    # a second call finds it and downloads nothing
    assert fetch_dataset("lfw", tmp_path / "data", url=server.url) == (folder, False)
    assert server.ranges == [None]
    # a config naming `lfw` finds it under $MFSR_DATA, before ./data and ../shared/data
    monkeypatch.setenv("MFSR_DATA", str(tmp_path / "data"))
    assert locate("lfw") == folder and resolve_source("lfw") == folder
    assert resolve_source("./lfw") == Path("lfw")
    monkeypatch.setenv("MFSR_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path / "data")  # no ./data, no ../shared/data from here
    with pytest.raises(MfsrError, match=r"lfw: not found \(looked in .*elsewhere.*mfsr data fetch"):
        locate("lfw")


def test_a_download_cut_short_resumes_from_where_it_stopped(server, tmp_path):
    server.cut = len(server.body) // 2
    with pytest.raises(MfsrError, match=r"stopped at .* run the same command again to resume"):
        fetch_dataset("lfw", tmp_path, url=server.url, sha256=sha(server.body))
    part = tmp_path / "lfw" / ".lfw-deepfunneled.tgz.part"
    assert part.stat().st_size == server.cut
    assert not (tmp_path / "lfw" / "images_deepfunneled").exists()
    server.cut = None
    folder, fetched = fetch_dataset("lfw", tmp_path, url=server.url, sha256=sha(server.body))
    assert fetched and len(list(folder.rglob("*.jpg"))) == 6
    assert server.ranges == [None, f"bytes={len(server.body) // 2}-"]
    assert not part.exists()


def test_a_wrong_checksum_deletes_the_download_and_extracts_nothing(server, tmp_path):
    with pytest.raises(MfsrError, match=r"failed its sha256 check .*deleted\); nothing was"):
        fetch_dataset("lfw", tmp_path, url=server.url, sha256="0" * 64)
    assert files_under(tmp_path) == []  # the folders it made are gone too
    # the official source is checked against LFW's published MD5, which this archive fails
    archive = tmp_path / "lfw.tgz"
    archive.write_bytes(server.body)
    with pytest.raises(MfsrError, match=r"lfw\.tgz: failed its md5 check .*kept\)"):
        fetch_dataset("lfw", tmp_path / "data", archive=archive)
    assert archive.read_bytes() == server.body  # a user's own copy is never deleted
    folder, _ = fetch_dataset("lfw", tmp_path / "data", archive=archive, sha256=sha(server.body))
    assert len(list(folder.rglob("*.jpg"))) == 6


@pytest.mark.parametrize(
    "body, message",
    [
        (make_archive(top="something-else"), r"no lfw-deepfunneled/ folder inside"),
        (b"<html>not found</html>", r"not a readable archive"),
        (make_archive(extra=tarfile.TarInfo("../../evil.txt")), r"not a readable archive"),
    ],
    ids=["other-archive", "not-an-archive", "path-out-of-the-folder"],
)
def test_a_hostile_or_wrong_archive_extracts_nothing(body, message, tmp_path):
    server = Server(body)
    try:
        with pytest.raises(MfsrError, match=message):
            fetch_dataset("lfw", tmp_path / "data", url=server.url, sha256=sha(body))
    finally:
        server.close()
    assert files_under(tmp_path) == []
    assert not (tmp_path.parent / "evil.txt").exists()


def test_cli_offline_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    closed = Server(b"")
    url = closed.url
    closed.close()  # nothing listens on that port now
    code, output = run(capsys, "data", "fetch", "lfw", "--to", tmp_path / "data", "--url", url)
    line = assert_one_line_error(code, output, "cannot connect", "nothing was written")
    assert "md5 68331da3eb755a505a502b5aacb3c201" in line and "--archive FILE" in line
    assert files_under(tmp_path) == []
    # with network the command reports where the data went
    server = Server(make_archive())
    try:
        args = ["data", "fetch", "lfw", "--to", tmp_path / "data", "--url", server.url]
        code, output = run(capsys, *args, "--sha256", sha(server.body))
    finally:
        server.close()
    assert code == 0, output
    assert f"done: {tmp_path / 'data' / 'lfw' / 'images_deepfunneled'}" in output


def test_data_build_finds_lfw_under_data_root(tmp_path, capsys, monkeypatch, lfw_subset):
    root = tmp_path / "my-data"
    (root / "lfw").mkdir(parents=True)
    (root / "lfw" / "images_deepfunneled").symlink_to(lfw_subset)
    monkeypatch.setenv("MFSR_DATA", str(tmp_path / "nowhere"))  # restored after the test
    monkeypatch.chdir(tmp_path)
    args = ["data", "build", "--source", "lfw", "--out", "out", "--scale", "4", "--frames", "2"]
    args += ["--hr-size", "32", "--counts", "12,6,6", "--splits", "val"]
    code, output = run(capsys, *args)
    assert_one_line_error(code, output, "lfw: not found (looked in", "nowhere", "mfsr data fetch")
    assert not (tmp_path / "out").exists()
    code, output = run(capsys, *args, "--data-root", root)
    assert code == 0, output
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["source"] == str(root / "lfw" / "images_deepfunneled")


def test_commands_without_data_leave_no_folders(tmp_path, capsys, monkeypatch):
    """A new user without LFW: each command fails in one line and leaves no empty runs/,
    eval/ or studies/ folder, nor a study.yaml, nor an empty progress bar (they once did)."""
    monkeypatch.setenv("MFSR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    for args, message in (
        (["train", "--config", "smoke"], "lfw: not found (looked in"),
        (["study", "--config", "smoke"], "lfw: not found (looked in"),
        (["evaluate", "--baseline", "bicubic", "--data", "none", "--out", "eval/x"], "not found"),
    ):
        code, output = run(capsys, *args)
        assert_one_line_error(code, output, message)
        assert "0/?" not in output  # no progress bar for work that never started (there was)
        assert list(tmp_path.iterdir()) == [], args
    code, output = run(capsys, "data", "fetch", "bogus")
    assert_one_line_error(code, output, "unknown dataset 'bogus'")
    assert "downloading" not in output
