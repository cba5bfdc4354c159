"""Guards on a folder that ``mfsr data from-video`` writes into, call after call.

The settings of the first call are recorded beside the sequences; a later call with others is
refused. Sample ids are ``<clip stem>_f<frame>``: a later clip whose name gives the same ids as
another clip's sequences already there is refused instead of replacing them.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

from mfsr.config import write_text_atomic
from mfsr.data.sample import META_NAME
from mfsr.errors import BadArgument, MfsrError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is gone: compare the names
        return a.resolve() == b.resolve()


#: The settings of the first ``build_from_video`` into a folder (later calls must match).
SETTINGS_NAME = "from-video.json"


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Record ``settings`` with the first sequences written into ``out``; refuse a later call
    with others (a folder mixing scales or degradations would be silently inconsistent)."""
    settings = json.loads(json.dumps(settings))  # as it reads back: tuples become lists
    path = out / SETTINGS_NAME
    if not path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(settings, indent=1) + "\n")
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    saved = saved if isinstance(saved, dict) else {}
    changed = sorted(k for k in settings.keys() | saved.keys() if saved.get(k) != settings.get(k))
    if changed:
        raise BadArgument(
            f"`out` {out}: holds sequences made with other settings ({', '.join(changed)}; see "
            f"{SETTINGS_NAME}); use the same settings or another `out`"
        )


def check_ids_free(split_dir: Path, stem: str, video: Path) -> None:
    """Refuse to write over another clip's windows: sample ids are ``<stem>_f<frame>``, so two
    clips whose names give the same stem (``a/x.mp4``, ``b/x.mp4``) would replace each other."""
    for folder in sorted(split_dir.glob(f"{glob.escape(stem)}_f*")):
        try:
            source = json.loads((folder / META_NAME).read_text(encoding="utf-8"))["source"]
            other = Path(source["path"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no readable record of its clip: replaced as any other sample folder
        if not _same_file(other, video):
            raise MfsrError(
                f"{video}: its sample ids ({stem}_f...) are taken in {split_dir} by another "
                f"clip ({other}); rename one of the clips, or build into another --out"
            )
        return
