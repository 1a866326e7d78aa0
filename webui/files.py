"""Every copy of a problem's files, so Delete deletes them all, and a bound on how long any copy lives.

A problem's photo exists in several places the file route serves: the upload Gradio received (the
student's original file), the photo the store keeps, Gradio's cache copy of each file the page was
shown (the photo in the chat, the history card, the exported page), the card itself and the exported
page. Before issue 22 Delete removed only the stored photo; everything else stayed downloadable by
its URL until the process ended, and after a crash for ever. Here:

- ``ProblemFiles`` remembers, per problem, the uploads it was made from and the pages exported from
  it (in memory: a restart is covered by the sweep below); ``forget(paths)`` deletes files and
  Gradio's cache copy of each (the cache names a copy by ``processing_utils.hash_file`` of its bytes,
  so the copy is found from the file, before the file goes);
- ``delete_cache()`` is Gradio's own periodic clean-up (``gr.Blocks(delete_cache=...)``): every file
  Gradio wrote (uploads, cache copies) is removed once older than ``R1V_CACHE_MAX_AGE_S`` (default a
  day), and all of them when the server stops; ``sweep(root, age)`` at start removes what a killed
  process left (files older than the same bound, under the app's own Gradio and export folders).

Used by ``app.py``::

    from webui.files import ProblemFiles, delete_cache, sweep
    files = ProblemFiles(); files.add(pid, upload_path); files.add(pid, export_path)
    files.delete(pid, stored_photos + cards)      # on Delete, before the store removes the photos
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradio import processing_utils
from gradio import utils as gr_utils

log = logging.getLogger("r1v.app")

DEFAULT_MAX_AGE_S = 24 * 3600


def max_age_s() -> int:
    """How long any file Gradio wrote may live: ``R1V_CACHE_MAX_AGE_S`` seconds (default one day)."""
    return max(1, int(float(os.environ.get("R1V_CACHE_MAX_AGE_S") or DEFAULT_MAX_AGE_S)))


def delete_cache() -> tuple[int, int]:
    """``(frequency, age)`` for ``gr.Blocks(delete_cache=...)``: checked every min(age, 1 h)."""
    age = max_age_s()
    return max(1, min(age, 3600)), age


def cache_dir() -> Path:
    return Path(gr_utils.get_upload_folder())


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False


def forget(paths: Iterable[str | Path], *, remove: bool = True) -> int:
    """Delete Gradio's cache copy of each file (its folder ``<cache>/<hash of the bytes>``), and, with
    ``remove``, the file itself. Returns the number of files and folders removed."""
    root, n = cache_dir(), 0
    for p in {Path(str(x)) for x in paths if x}:
        try:
            if not p.is_file():
                continue
            copy = root / processing_utils.hash_file(p)
            if copy.is_dir() and _inside(copy, root) and copy.resolve() != p.resolve().parent:
                shutil.rmtree(copy, ignore_errors=True)
                n += 1
            if remove:
                p.unlink(missing_ok=True)
                n += 1
                parent = p.parent  # an upload's own folder (named by its hash): empty now
                if _inside(parent, root) and parent.resolve() != root.resolve() and not any(parent.iterdir()):
                    parent.rmdir()
        except OSError as e:
            log.warning("could not delete %s: %r", p, e)
    return n


class ProblemFiles:
    """The uploads and exported pages of each problem (see the module docstring); thread-safe."""

    def __init__(self) -> None:
        self._files: dict[int, set[str]] = {}
        self._lock = threading.Lock()

    def add(self, pid: int, *paths: Any) -> None:
        """Remember ``paths`` for problem ``pid``: uploads (only files in Gradio's upload folder) and
        exports."""
        keep = set()
        for p in paths:
            try:
                if isinstance(p, str | Path) and not str(p).startswith("data:") and Path(str(p)).is_file():
                    keep.add(str(p))
            except (OSError, ValueError):
                continue
        if keep:
            with self._lock:
                self._files.setdefault(pid, set()).update(keep)

    def delete(self, pid: int, also: Iterable[str | Path] = ()) -> int:
        """Delete problem ``pid``'s uploads and exports with their cache copies, and the cache copies of
        ``also`` (its stored photos and cards, which their owners delete); returns what was removed."""
        with self._lock:
            own = self._files.pop(pid, set())
        also = [Path(str(p)) for p in also]
        n = forget([p for p in also if p.is_file()], remove=False)
        cards = [p for p in also if p.is_dir()]
        for d in cards:  # the problem's own card folder (webui.layout.thumb_dir)
            n += forget(d.glob("*"), remove=True)
            shutil.rmtree(d, ignore_errors=True)
        return n + forget(own, remove=True)


def sweep(roots: Iterable[str | Path], age_s: int | None = None) -> int:
    """Remove files older than ``age_s`` (default ``max_age_s()``) under each root and the folders left
    empty: at start, what a killed process left in its Gradio and export folders."""
    age = max_age_s() if age_s is None else age_s
    cutoff, n = time.time() - age, 0
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*"), key=lambda q: len(q.parts), reverse=True):
            try:
                if p.is_file() and p.lstat().st_mtime < cutoff:
                    p.unlink()
                    n += 1
                elif p.is_dir() and not any(p.iterdir()):
                    p.rmdir()
            except OSError:
                continue
    if n:
        log.info("removed %d file(s) older than %d s from the upload cache", n, age)
    return n
