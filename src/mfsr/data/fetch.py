"""Known public datasets: where mfsr looks for them, and the download behind ``mfsr data fetch``.

A config may name a known dataset instead of a folder (``data.build.source: lfw``). Its folder
is looked for under the data roots, in order: ``$MFSR_DATA`` (set by ``--data-root``) when
set, ``./data``, then ``../shared/data``; the first that holds it wins. To use a folder that is
literally called ``lfw``, write ``./lfw``.

:func:`fetch` is the only code in mfsr that downloads a dataset. It resumes a partial download
(HTTP ``Range`` into a hidden ``.part`` file), checks the archive against its published digest,
extracts into a temporary folder beside the target and renames it into place, so no failure
leaves a half-extracted dataset behind. Hand-written on ``urllib`` because neither
``torch.hub.download_url_to_file`` nor pooch resumes a partial download.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mfsr.config import write_text_atomic
from mfsr.errors import MfsrError, about
from mfsr.locks import folder_lock

Progress = Callable[[int, int], None]  # (bytes done, bytes in all; 0 when unknown)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class KnownDataset:
    """A public dataset mfsr can find by name and download."""

    folder: str  # where it lives under a data root
    archive: str  # the archive's file name
    member: str  # the archive's top folder, renamed to ``folder``
    urls: tuple[str, ...]  # tried in order
    md5: str  # the published digest of the archive
    about: str  # size and licence, for messages


KNOWN: dict[str, KnownDataset] = {
    # LFW publishes MD5 digests only; this one is also torchvision's (datasets.LFWPeople).
    "lfw": KnownDataset(
        folder="lfw/images_deepfunneled",
        archive="lfw-deepfunneled.tgz",
        member="lfw-deepfunneled",
        urls=(
            "https://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
            "http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
        ),
        md5="68331da3eb755a505a502b5aacb3c201",
        about="Labeled Faces in the Wild, deep-funneled, about 100 MB, for research use",
    ),
}


def data_roots() -> list[Path]:
    """The folders searched for a known dataset, in order (``$MFSR_DATA`` first when set)."""
    env = os.environ.get("MFSR_DATA")
    roots = [Path(env)] if env else []
    return [*roots, Path("data"), Path("..") / "shared" / "data"]


def _known(name: str) -> KnownDataset:
    if name not in KNOWN:
        raise MfsrError(f"unknown dataset {name!r}; known: {', '.join(sorted(KNOWN))}")
    return KNOWN[name]


def locate(name: str) -> Path:
    """The folder of known dataset ``name`` under the first data root that has it.

    Raises:
        MfsrError: unknown name, or not found (lists where it looked and how to get it).
    """
    known = _known(name)
    places = [root / known.folder for root in data_roots()]
    for place in places:
        if place.is_dir():
            return place
    raise MfsrError(
        f"{name}: not found (looked in {', '.join(map(str, places))}); run `mfsr data fetch "
        f"{name}` (needs network), or set MFSR_DATA to a folder that holds {known.folder}"
    )


def resolve_source(source: str | Path) -> Path:
    """A photo folder from a config or option: a known dataset's name, or a path as given."""
    return locate(str(source)) if str(source) in KNOWN else Path(source)


def _digests(path: Path) -> tuple[str, str]:
    """(md5, sha256) of a file in one read: LFW publishes MD5 only, the record keeps sha256."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def _request(url: str, start: int):
    request = urllib.request.Request(url, headers={"User-Agent": "mfsr-data-fetch"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=60)


def download(url: str, part: Path, progress: Progress | None = None) -> None:
    """Download ``url`` into ``part``, resuming from the bytes ``part`` already holds.

    Raises:
        MfsrError: the server cannot be reached or answers an error (nothing written), or
            it stops before the end (the bytes received stay in ``part`` for a resume).
    """
    start = part.stat().st_size if part.is_file() else 0
    try:
        response = _request(url, start)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # "range not satisfiable": part already holds it all
            return
        raise MfsrError(f"{url}: the server answered HTTP {exc.code} ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        reason = getattr(exc, "reason", None) or exc
        raise MfsrError(f"{url}: cannot connect ({reason})") from None
    with response:
        if response.status != 206:  # the server ignored the Range header: start again
            start = 0
        length = int(response.headers.get("Content-Length") or 0)
        total = start + length if length else 0
        done = start
        try:
            with about(part), open(part, "ab" if start else "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except (http.client.HTTPException, TimeoutError, ConnectionError) as exc:
            reason = f"{type(exc).__name__}"
        else:
            reason = "" if not total or done >= total else "the connection closed"
    if reason:
        raise MfsrError(
            f"{url}: the download stopped at {done / 1e6:.1f} of {total / 1e6:.1f} MB "
            f"({reason}); the bytes received are kept in {part}: run the same command again "
            "to resume"
        )


def _check(archive: Path, known: KnownDataset, sha256: str | None, downloaded: bool) -> str:
    """The archive's sha256 after checking it against ``sha256`` if given, else the published
    MD5; a downloaded archive that fails is deleted (a user's own copy is kept)."""
    md5, got = _digests(archive)
    want, algorithm = (sha256.lower(), "sha256") if sha256 else (known.md5, "md5")
    if (got if sha256 else md5) != want:
        if downloaded:
            archive.unlink()
        raise MfsrError(
            f"{archive}: failed its {algorithm} check (expected {want}, "
            f"{'deleted' if downloaded else 'kept'}); nothing was extracted; try again, or "
            "another copy"
        )
    return got


def _extract(archive: Path, known: KnownDataset, dest: Path) -> int:
    """Extract ``known.member`` of ``archive`` to ``dest`` through a temporary folder beside
    it; returns the number of files. Members outside the archive's folder are refused."""
    tmp = dest.parent / f".{dest.name}.extract-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            # "data" refuses absolute paths, "..", links out of the folder and device files
            tar.extractall(tmp, filter="data")
        top = tmp / known.member
        if not top.is_dir():
            raise MfsrError(f"{archive}: no {known.member}/ folder inside; not the {known.archive}")
        count = sum(1 for p in top.rglob("*") if p.is_file())
        os.replace(top, dest)
        return count
    except (tarfile.TarError, EOFError) as exc:
        raise MfsrError(f"{archive}: not a readable archive ({exc}); nothing extracted") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download_any(
    name: str, known: KnownDataset, urls: tuple[str, ...], part: Path, progress: Progress | None
) -> str:
    """Download from the first of ``urls`` that answers; returns it."""
    errors = []
    for url in urls:
        try:
            download(url, part, progress)
            return url
        except MfsrError as exc:
            if part.is_file() and part.stat().st_size:
                raise  # a partial download: resume it from this source, not another
            errors.append(str(exc))
    part.unlink(missing_ok=True)
    raise MfsrError(
        f"{'; '.join(errors)}; nothing was written. Without network, download {known.archive} "
        f"(md5 {known.md5}) elsewhere and run `mfsr data fetch {name} --archive FILE`"
    )


def _get_archive(
    name: str,
    known: KnownDataset,
    folder: Path,
    url: str | None,
    sha256: str | None,
    archive: Path | None,
    progress: Progress | None,
) -> tuple[tuple[str, Path], str]:
    """((source, archive path), sha256): the user's ``archive``, or a download into
    ``folder``; checked either way."""
    if archive is not None:
        return (str(archive), archive), _check(archive, known, sha256, downloaded=False)
    part = folder / f".{known.archive}.part"
    source = _download_any(name, known, (url,) if url else known.urls, part, progress)
    return (source, part), _check(part, known, sha256, downloaded=True)


def fetch_dataset(
    name: str,
    to: Path | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    archive: Path | None = None,
    progress: Progress | None = None,
) -> tuple[Path, bool]:
    """Download (or take from ``archive``), check and extract known dataset ``name`` under
    data root ``to`` (default: the first of :func:`data_roots`).

    ``url`` replaces the official sources (a mirror); ``sha256`` replaces the published MD5
    as the check (for a mirror that repacked the files). Returns the dataset folder and
    whether it was fetched now (False: it was already there).

    Raises:
        MfsrError: unknown name; offline or a server error (nothing written); a download cut
            short (kept for a resume); a failed checksum (deleted); an unreadable archive.
    """
    known = _known(name)
    root = Path(to) if to is not None else data_roots()[0]
    dest = root / known.folder
    if dest.is_dir():
        return dest, False
    made_root = not root.exists()
    try:
        with folder_lock(dest.parent, "download"):  # removed again if it stays empty
            where, digest = _get_archive(name, known, dest.parent, url, sha256, archive, progress)
            try:
                count = _extract(where[1], known, dest)
            except MfsrError:
                if archive is None:  # checked but unusable: a rerun must download again
                    where[1].unlink()
                raise
            record = {"dataset": name, "source": where[0], "archive_sha256": digest, "files": count}
            write_text_atomic(dest.parent / "fetch.json", json.dumps(record, indent=2) + "\n")
            if archive is None:
                where[1].unlink()
    except BaseException:
        if made_root:
            with contextlib.suppress(OSError):
                root.rmdir()  # only if empty: a partial download stays for a resume
        raise
    return dest, True
