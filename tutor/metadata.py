"""Strip an uploaded photo's metadata (GPS position, camera, dates, comments) without decoding it.

    from tutor.metadata import strip_metadata, strip_file
    clean = strip_metadata(raw)        # bytes of the same picture: only the EXIF orientation is kept
    strip_file(path)                   # in place (temporary file renamed over it); False: left as it was

A phone photo's EXIF carries where it was taken. The stored photo never had it (``tutor.intake``
stores the pixels), but the file the student uploaded was kept by Gradio and served at its URL as
sent (issue 22, Medium 7). ``webui.upload_limits`` runs :func:`strip_file` on every upload before the
upload route answers, so no copy with the position is ever served.

Lossless and without decoding a pixel: JPEG (and MPO) drop every APP1..APP15 and COM segment except
the ICC colour profile (APP2) and Adobe's colour transform (APP14), and everything after the first
image (MPO's other pictures, appended data); PNG drops ``eXIf`` and the text and time chunks; WebP
drops its ``EXIF`` and ``XMP`` chunks. When the photo was turned by an EXIF orientation other than 1,
a minimal EXIF block holding only that orientation is written back, so every viewer (and the intake)
still shows it upright. HEIF/AVIF carry EXIF inside their box structure; such a photo is re-encoded
as PNG by ``tutor.intake.load_image`` (after its header check; orientation applied to the pixels).
Anything else (GIF, BMP: no EXIF; not an image: the intake refuses it later) is left as it is.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

from tutor.errors import InputError
from tutor.intake import check_header, load_image

log = logging.getLogger(__name__)

ORIENTATION = 0x0112
_PNG_DROP = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}


def _orientation(raw: bytes) -> int:
    """The EXIF orientation of a JPEG or WebP (Pillow reads their EXIF when it opens the header)."""
    try:
        with Image.open(io.BytesIO(raw)) as im:  # the header and EXIF only, no pixel decoded
            return int(im.getexif().get(ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: as if there were none
        return 1


def _tiff_orientation(tiff: bytes) -> int:
    """The orientation in a bare EXIF (TIFF) block, e.g. a PNG's ``eXIf`` chunk. (Pillow's PNG
    ``getexif()`` decodes the whole image to look for that chunk after the pixels.)"""
    try:
        ex = Image.Exif()
        ex.load(tiff if tiff.startswith(b"Exif\0\0") else b"Exif\0\0" + tiff)
        return int(ex.get(ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: as if there were none
        return 1


def _exif_tiff(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[ORIENTATION] = orientation
    data = ex.tobytes()
    return data[6:] if data.startswith(b"Exif\0\0") else data


def _jpeg(raw: bytes) -> bytes | None:
    if raw[:2] != b"\xff\xd8":
        return None
    kept: list[bytes] = []
    i, n, ended = 2, len(raw), False
    while i + 2 <= n:
        if raw[i] != 0xFF:
            return None
        m = raw[i + 1]
        if m == 0xFF:
            i += 1
            continue
        if m == 0xD9:
            ended = True
            break
        if i + 4 > n:
            return None
        length = struct.unpack(">H", raw[i + 2:i + 4])[0]
        seg = raw[i:i + 2 + length]
        metadata = 0xE1 <= m <= 0xEF or m == 0xFE
        if not metadata or (m == 0xE2 and seg[4:16] == b"ICC_PROFILE\0") or m == 0xEE:
            kept.append(seg)
        i += 2 + length
        if m == 0xDA:  # entropy-coded data up to the next marker that is not a stuffed byte or a restart
            j = i
            while j + 1 < n and not (raw[j] == 0xFF and raw[j + 1] not in (0x00, *range(0xD0, 0xD8))):
                j += 1
            kept.append(raw[i:j])
            i = j
    if not ended:
        return None  # truncated or not a JPEG: left as it is, for the intake to name
    o = _orientation(raw)
    if o != 1:
        payload = b"Exif\0\0" + _exif_tiff(o)
        app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
        at = 1 if kept and kept[0][:2] == b"\xff\xe0" else 0  # after JFIF's APP0
        kept.insert(at, app1)
    return b"\xff\xd8" + b"".join(kept) + b"\xff\xd9"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(raw: bytes) -> bytes | None:
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    chunks, i, o = [], 8, 1
    while i + 8 <= len(raw):
        length = struct.unpack(">I", raw[i:i + 4])[0]
        kind = raw[i + 4:i + 8]
        chunk = raw[i:i + 12 + length]
        if len(chunk) < 12 + length:
            return None  # truncated: left as it is
        if kind == b"eXIf":
            o = _tiff_orientation(chunk[8:-4])
        chunks.append((kind, chunk))
        i += 12 + length
        if kind == b"IEND":
            break
    else:
        return None  # no IEND: truncated, left as it is
    out = [raw[:8]]
    for kind, chunk in chunks:
        if kind == b"IDAT" and o != 1:  # before the pixels, where every reader finds it
            out.append(_png_chunk(b"eXIf", _exif_tiff(o)))
            o = 1
        if kind not in _PNG_DROP:
            out.append(chunk)
    return b"".join(out)


def _webp(raw: bytes) -> bytes | None:
    if raw[:4] != b"RIFF" or raw[8:12] != b"WEBP":
        return None
    chunks, i = [], 12
    while i + 8 <= len(raw):
        kind = raw[i:i + 4]
        size = struct.unpack("<I", raw[i + 4:i + 8])[0]
        body = raw[i + 8:i + 8 + size]
        if len(body) < size:
            return None  # truncated: left as it is
        i += 8 + size + (size & 1)
        if kind in (b"EXIF", b"XMP "):
            continue
        if kind == b"VP8X" and body:
            body = bytes([body[0] & ~0x0C]) + body[1:]  # no EXIF (0x08) and no XMP (0x04) flag
        chunks.append(kind + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b""))
    o = _orientation(raw)
    if o != 1 and chunks and chunks[0][:4] == b"VP8X":
        body = _exif_tiff(o)
        first = chunks[0]
        chunks[0] = first[:8] + bytes([first[8] | 0x08]) + first[9:]
        chunks.append(b"EXIF" + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b""))
    data = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(data)) + data


def strip_metadata(raw: bytes) -> bytes | None:
    """The photo's bytes without metadata (see the module docstring); None when this format is not one
    stripped here or the file is not what its header says."""
    for fn in (_jpeg, _png, _webp):
        try:
            out = fn(raw)
        except (struct.error, IndexError, ValueError):
            return None
        if out is not None:
            return out
    return None


def strip_file(path: str | Path) -> bool:
    """Strip the metadata of the photo at ``path`` in place; True when the file was rewritten."""
    path = Path(path)
    try:
        header = check_header(path)
    except InputError:
        return False  # not a photo the intake takes: it refuses it, with its reason, when it is used
    raw = path.read_bytes()
    if header.format in ("HEIF", "AVIF"):
        if not _has_exif(raw):
            return False
        try:
            clean: bytes | None = load_image(raw).png_bytes()
        except InputError:
            return False
    else:
        clean = strip_metadata(raw)
    if clean is None or clean == raw:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.strip")
    tmp.write_bytes(clean)
    os.replace(tmp, path)
    log.debug("metadata stripped from %s (%d -> %d bytes)", path.name, len(raw), len(clean))
    return True


def _has_exif(raw: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(raw)) as im:
            return bool(im.getexif()) or bool(im.info.get("exif")) or bool(im.info.get("xmp"))
    except Exception:  # noqa: BLE001
        return False
