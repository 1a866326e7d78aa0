"""A visitor's stored photos: their file names (per visitor, not guessable) and how many bytes they may keep.

    from tutor.uploads import photo_key, photo_path, save_photo, visitor_quota
    key = photo_key(image_dir)                       # 32 random bytes in <image_dir>/../photo_key
    path = photo_path(image_dir, key, user, sha256)  # <image_dir>/<h[:2]>/<h>.png
    n = save_photo(pil_image, path, used, quota)     # bytes written (0: already there); past the quota: refused

Used by ``tutor.store.Store.add_problem``. Stored photos are served to the page by path. Named by
their content hash alone, the same picture uploaded by two visitors was one file whose name anyone
holding the picture could compute (``tutor.intake``'s hash of the pixels), so asking the server for
that name told whether someone had uploaded it. Here the name is ``HMAC(key, visitor id + content
hash)``: the same photo of one visitor is still stored once, another visitor's copy is another file,
and no name can be computed without the key, which lives beside the image directory (never inside
it: the image directory is served) and is made on first use.

Quota: each visitor may keep ``R1V_VISITOR_QUOTA_MB`` (default 200) MB of photos; a photo that would
go past it is refused with ``InputError("storage_full")``, saying how to make room (delete old
problems), before the problem is saved.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tutor.errors import InputError

DEFAULT_QUOTA_MB = 200
# zlib level of stored photos: lossless like the default 6 and ~3x faster to encode (a 2048-px photo
# ~0.15 s instead of ~0.45 s), for ~15% more bytes; it is on the path of every new question
PNG_LEVEL = 1
_key_lock = threading.Lock()


def visitor_quota() -> int:
    """Bytes of photos one visitor may keep: ``R1V_VISITOR_QUOTA_MB`` (a number, default 200)."""
    raw = os.environ.get("R1V_VISITOR_QUOTA_MB") or DEFAULT_QUOTA_MB
    return int(float(raw) * 1024 * 1024)


def photo_key(image_dir: str | Path) -> bytes:
    """The key naming stored photos, kept in ``<image_dir>/../photo_key`` (created 0600 on first use)."""
    path = Path(image_dir).resolve().parent / "photo_key"
    with _key_lock:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def photo_path(image_dir: str | Path, key: bytes, user: str, sha256: str) -> Path:
    """Where ``user``'s photo with content hash ``sha256`` is stored."""
    name = hmac.new(key, f"{user}\n{sha256}".encode(), hashlib.sha256).hexdigest()
    return Path(image_dir) / name[:2] / f"{name}.png"


def stored_bytes(paths: Iterable[Path]) -> int:
    """The bytes of the files at ``paths`` (missing ones count 0)."""
    total = 0
    for p in paths:
        try:
            total += p.stat().st_size
        except OSError:
            continue
    return total


def storage_full(used: int, adding: int, quota: int) -> InputError:
    mb = quota / (1024 * 1024)
    return InputError(
        "storage_full",
        f"Your history is full: it may keep {mb:.0f} MB of photos. Delete some old problems in History, "
        "then ask again.",
        f"你的历史记录已满：最多保存 {mb:.0f} MB 的照片。请在历史记录中删除一些旧题目后再提问。",
        f"{used} bytes stored + {adding} > {quota}",
    )


def save_photo(image: Any, path: Path, used: int, quota: int) -> int:
    """Write ``image`` (PIL) as PNG at ``path`` unless a file is there; return the bytes written.

    The write goes to a temporary file renamed into place, so a reader never sees half a file; a file
    that would take the visitor's ``used`` bytes past ``quota`` is removed again and refused
    (``storage_full``)."""
    if path.exists():
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        image.save(tmp, format="PNG", compress_level=PNG_LEVEL)
        size = tmp.stat().st_size
        if used + size > quota:
            raise storage_full(used, size, quota)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return size
