"""Image intake: turn an uploaded photo into a checked, upright, bounded RGB image.

Every photo of a problem passes through here before it reaches a prompt or the history store::

    from tutor.intake import load_image, load_images

    img = load_image(Path("problem.heic"))      # or bytes, a str path, a data: URL, a PIL image
    img.image          # PIL.Image in mode RGB, EXIF orientation applied, longest side <= 2048
    img.sha256         # content hash (see below)
    img.save(data_dir() / "images")             # -> <dir>/<sha[:2]>/<sha>.png (stored once)
    imgs = load_images([b1, b2])                # at most 4 per question
    check_header(path_or_bytes)                 # the checks before decoding, alone: milliseconds

Accepted: JPEG (and MPO, the multi-picture JPEG some phones write), PNG, WebP, BMP, GIF (first frame),
HEIC/HEIF (through pillow-heif) and AVIF. Anything else is refused with its own error code; every
refusal is an :class:`~tutor.errors.InputError` with a message in Chinese and English.

Order of checks, cheapest first: the file must exist and be non-empty and at most ``max_bytes``;
the header is parsed and the format checked; the pixel count from the header is checked against
``max_pixels`` *before* any pixel is decoded (a decompression bomb never gets decoded; Pillow's own
``DecompressionBombError``/``Warning`` map to the same error); only then the pixels are decoded (a
truncated or corrupt file is refused here), turned upright, converted to RGB (transparency is
composited on white, 16-bit greyscale is scaled down, CMYK and palettes converted), checked against
``min_side`` and shrunk so that the longest side is at most ``max_side``.

Hash: ``sha256`` is taken over the *normalised pixels* (size header + RGB bytes after orientation,
conversion and downscaling), not over the file. The same file therefore always hashes the same, and
so does the same picture saved losslessly in another container (PNG, BMP, lossless WebP) or with a
different EXIF orientation flag but the same upright pixels. The stored file is named by that hash,
so a photo uploaded twice is stored once.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from tutor.errors import InputError

log = logging.getLogger(__name__)

try:  # HEIC/HEIF (iPhone photos). A hard requirement, but the rest works without it.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover - pillow-heif is in requirements.txt
    HEIF_AVAILABLE = False
    log.warning("pillow-heif is not installed: HEIC/HEIF photos will be refused")

#: Pillow format names we accept (``Image.format`` after opening).
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "DIB", "GIF", "HEIF", "AVIF")
#: Plugins Pillow may use to parse an upload: only these parsers ever see user bytes in full.
_OPEN_FORMATS: tuple[str, ...] = tuple(
    f for f in ("JPEG", "PNG", "WEBP", "BMP", "DIB", "GIF", "HEIF", "AVIF") if f != "HEIF" or HEIF_AVAILABLE
)
#: The largest number of images one question may carry.
MAX_IMAGES = 4


@dataclass(frozen=True)
class IntakeLimits:
    """Bounds applied to each image. The defaults suit phone photos of exam problems."""

    max_bytes: int = 20 * 1024 * 1024  # file size
    max_pixels: int = 40_000_000  # width * height from the header, before decoding
    min_side: int = 32  # shorter side; smaller than this cannot be read
    max_side: int = 2048  # longest side handed to the model (downscaled, aspect kept)


DEFAULT_LIMITS = IntakeLimits()


@dataclass(frozen=True, eq=False)
class IntakeImage:
    """A checked photo ready for the model: upright RGB pixels and their content hash."""

    image: Image.Image = field(repr=False)
    sha256: str
    width: int
    height: int
    format: str  # Pillow's name of the original container: "JPEG", "PNG", "HEIF", ...
    original_width: int  # before downscaling (after orientation)
    original_height: int
    n_bytes: int  # size of the uploaded file (0 when given a PIL image)

    @property
    def downscaled(self) -> bool:
        return (self.width, self.height) != (self.original_width, self.original_height)

    def png_bytes(self) -> bytes:
        """The image encoded as PNG (lossless; what the model and the store receive by default)."""
        buf = io.BytesIO()
        self.image.save(buf, format="PNG", optimize=False)
        return buf.getvalue()

    def jpeg_bytes(self, quality: int = 92) -> bytes:
        """The image encoded as JPEG (smaller, for photos sent over the network)."""
        buf = io.BytesIO()
        self.image.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()

    def data_url(self, fmt: str = "png") -> str:
        """A ``data:`` URL for the OpenAI chat API (``fmt`` is "png" or "jpeg")."""
        raw = self.jpeg_bytes() if fmt.lower() in ("jpg", "jpeg") else self.png_bytes()
        mime = "image/jpeg" if fmt.lower() in ("jpg", "jpeg") else "image/png"
        return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"

    def storage_path(self, directory: str | Path) -> Path:
        """Where :meth:`save` puts this image: ``<dir>/<sha[:2]>/<sha>.png``."""
        return Path(directory) / self.sha256[:2] / f"{self.sha256}.png"

    def save(self, directory: str | Path) -> Path:
        """Store the image content-addressed as PNG and return its path.

        A file already there (the same photo uploaded before) is kept as it is. The write goes to a
        temporary file that is renamed into place, so a reader never sees half a file.
        """
        path = self.storage_path(directory)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(self)}.tmp")
        try:
            tmp.write_bytes(self.png_bytes())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


# --- errors -------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def _err(code: str, detail: str = "", limits: IntakeLimits = DEFAULT_LIMITS) -> InputError:
    """The refusal for ``code`` with its English and Chinese message."""
    messages = {
        "image_not_found": (
            "The image file could not be found. Please upload the photo again.",
            "找不到图片文件，请重新上传照片。",
        ),
        "image_empty": (
            "The uploaded file is empty. Please choose a photo of the problem.",
            "上传的文件是空的，请选择题目的照片。",
        ),
        "image_too_large": (
            f"The file is too large (the limit is {_mb(limits.max_bytes)}). Please upload a smaller photo.",
            f"文件太大（上限为 {_mb(limits.max_bytes)}），请上传较小的照片。",
        ),
        "image_not_an_image": (
            "This file is not an image. Please upload a photo (JPEG, PNG, WebP, HEIC, BMP or GIF).",
            "这个文件不是图片，请上传照片（JPEG、PNG、WebP、HEIC、BMP 或 GIF）。",
        ),
        "image_unsupported_format": (
            "This image format is not supported. Please use JPEG, PNG, WebP, HEIC, BMP or GIF.",
            "不支持这种图片格式，请使用 JPEG、PNG、WebP、HEIC、BMP 或 GIF。",
        ),
        "image_too_many_pixels": (
            f"The image has too many pixels (the limit is {limits.max_pixels // 1_000_000} megapixels). "
            "Please upload a smaller photo.",
            f"图片像素过多（上限为 {limits.max_pixels // 1_000_000} 百万像素），请上传较小的照片。",
        ),
        "image_corrupt": (
            "The image is damaged or incomplete and cannot be read. Please take or upload the photo again.",
            "图片已损坏或不完整，无法读取，请重新拍摄或上传。",
        ),
        "image_too_small": (
            f"The image is too small to read (each side must be at least {limits.min_side} pixels). "
            "Please upload a clearer photo.",
            f"图片太小，无法识别（每边至少 {limits.min_side} 像素），请上传更清晰的照片。",
        ),
        "too_many_images": (
            f"Too many images: at most {MAX_IMAGES} photos per question.",
            f"图片太多：每道题最多 {MAX_IMAGES} 张照片。",
        ),
        "image_bad_input": (
            "The upload could not be read as a file. Please upload the photo again.",
            "无法读取上传的内容，请重新上传照片。",
        ),
    }
    en, zh = messages[code]
    return InputError(code, en, zh, detail)


# --- loading ------------------------------------------------------------------------------------


def _read(data: bytes | bytearray | memoryview | str | Path, limits: IntakeLimits) -> bytes:
    """The raw file bytes, with existence, emptiness and size checked (size before reading)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif isinstance(data, str) and data.startswith("data:"):
        return _read(_from_data_url(data, limits), limits)
    elif isinstance(data, (str, Path)):
        path = Path(data)
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise _err("image_not_found", f"not a regular file: {path}")
        except OSError as e:
            raise _err("image_not_found", f"{path}: {e}") from e
        if size > limits.max_bytes:
            raise _err("image_too_large", f"{path}: {size} bytes > {limits.max_bytes}", limits)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise _err("image_not_found", f"{path}: {e}") from e
    else:
        raise _err("image_bad_input", f"unsupported input type {type(data).__name__}")
    if not raw:
        raise _err("image_empty")
    if len(raw) > limits.max_bytes:
        raise _err("image_too_large", f"{len(raw)} bytes > {limits.max_bytes}", limits)
    return raw


def _from_data_url(url: str, limits: IntakeLimits) -> bytes:
    """The bytes of a ``data:[<mime>];base64,<data>`` URL (what a browser canvas hands over)."""
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise _err("image_bad_input", f"not a base64 data URL: {head[:60]!r}")
    if len(payload) * 3 // 4 > limits.max_bytes + 3:  # refuse before decoding
        raise _err("image_too_large", f"data URL of {len(payload)} chars", limits)
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError as e:
        raise _err("image_bad_input", f"bad base64: {e}") from e


def _open(raw: bytes, limits: IntakeLimits) -> Image.Image:
    """Parse the header with the accepted plugins only; sort out not-an-image from unsupported."""
    try:
        return Image.open(io.BytesIO(raw), formats=list(_OPEN_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _err("image_too_many_pixels", str(e), limits) from e
    except UnidentifiedImageError:
        pass
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # header of an accepted format is broken
        raise _err("image_corrupt", f"header: {e!r}") from e
    # Not one of ours. Let Pillow identify it from the header alone (nothing is decoded), so the
    # student learns "unsupported format" for a TIFF and "not an image" for a PDF or a text file.
    try:
        with Image.open(io.BytesIO(raw)) as other:
            fmt = other.format
    except Exception as e:  # noqa: BLE001 - any failure here means "not an image"
        raise _err("image_not_an_image", f"unidentified: {e!r}") from e
    raise _err("image_unsupported_format", f"format {fmt}")


def _verify(raw: bytes) -> None:
    try:
        with Image.open(io.BytesIO(raw), formats=list(_OPEN_FORMATS)) as again:
            again.verify()
    except Exception as e:  # noqa: BLE001 - a failed check in any form means a damaged file
        raise _err("image_corrupt", f"verify: {e!r}") from e


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB: transparency onto white, 16/32-bit greyscale scaled down."""
    mode = img.mode
    if mode == "RGB":
        return img
    if (mode == "P" and "transparency" in img.info) or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img.convert("F") if mode == "F" else img).astype(np.float64)
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        else:  # 32-bit int or float: the values' own range (8-bit data stays as it is)
            lo, hi = min(float(arr.min()), 0.0), float(arr.max())
            if hi <= 255 and lo >= 0:
                hi = 255.0
        scaled = np.clip((arr - lo) * (255.0 / max(hi - lo, 1e-12)), 0, 255).round().astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _hash(img: Image.Image) -> str:
    h = hashlib.sha256()
    h.update(f"RGB {img.width}x{img.height}\n".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def _normalise(img: Image.Image, fmt: str, n_bytes: int, limits: IntakeLimits) -> IntakeImage:
    """Orient, convert, check the size and downscale an image whose pixels may not be loaded yet."""
    w, h = img.size
    _check_size(w, h, limits)
    try:  # the size the file declares, upright (EXIF orientations 5-8 swap width and height)
        rotated = img.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not worth refusing the photo for
        rotated = False
    ow, oh = (h, w) if rotated else (w, h)
    try:
        if fmt in ("JPEG", "MPO") and max(w, h) >= 2 * limits.max_side:
            img.draft(img.mode, (limits.max_side, limits.max_side))  # decode at 1/2, 1/4 or 1/8
        img.load()
        try:
            upright = ImageOps.exif_transpose(img) or img
        except Exception as e:  # noqa: BLE001 - unreadable EXIF: keep the pixels as stored
            log.warning("ignoring unreadable EXIF orientation: %r", e)
            upright = img
        rgb = _to_rgb(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _err("image_too_many_pixels", str(e), limits) from e
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, struct.error) as e:
        raise _err("image_corrupt", f"decode: {e!r}") from e
    if max(rgb.size) > limits.max_side:
        rgb = rgb.copy()
        rgb.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    elif rgb is img:
        rgb = rgb.copy()  # detach from the file object
    return IntakeImage(
        image=rgb,
        sha256=_hash(rgb),
        width=rgb.width,
        height=rgb.height,
        format=fmt,
        original_width=ow,
        original_height=oh,
        n_bytes=n_bytes,
    )


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header declares, checked by :func:`check_header` (no pixel decoded)."""

    format: str
    width: int
    height: int
    n_bytes: int


def check_header(
    data: bytes | str | Path,
    *,
    lang: str = "en",
    limits: IntakeLimits | None = None,
) -> ImageHeader:
    """The checks :func:`load_image` makes before it decodes a pixel, and nothing more: the file exists,
    is not empty and at most ``max_bytes``; its header parses as an accepted format; the size it
    declares is within ``max_pixels`` and ``min_side``. Raises the same :class:`InputError`.

    Milliseconds for any file (a 12000 x 12000 PNG: ~5 ms), so it can run before anything else touches
    an upload: Gradio's own preprocessing decodes every image it is given (``webui.components``)."""
    limits = limits or DEFAULT_LIMITS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # as in load_image
            raw = _read(data, limits)
            with _open(raw, limits) as img:
                fmt, (w, h) = (img.format or "").upper(), img.size
        _check_size(w, h, limits)
    except InputError as e:
        log.info("image refused from its header: %s (%s) [%s]", e.code, e.detail, e.message(lang))
        raise
    return ImageHeader(fmt, w, h, len(raw))


def _check_size(w: int, h: int, limits: IntakeLimits) -> None:
    if w * h > limits.max_pixels:
        raise _err("image_too_many_pixels", f"{w}x{h} = {w * h} px > {limits.max_pixels}", limits)
    if min(w, h) < limits.min_side:
        raise _err("image_too_small", f"{w}x{h}", limits)


def load_image(
    data: bytes | str | Path | Image.Image,
    *,
    lang: str = "en",
    limits: IntakeLimits | None = None,
) -> IntakeImage:
    """Check and normalise one uploaded image; raise :class:`InputError` on any bad input.

    ``data`` is the file's bytes, a path (``str`` or ``Path``, as Gradio hands over uploads), a
    base64 ``data:`` URL, or an already decoded PIL image. ``lang`` is the student's language, used
    for the log line of a refusal (the error itself carries both languages).
    """
    limits = limits or DEFAULT_LIMITS
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than raises) between MAX_IMAGE_PIXELS and twice that; treat both
            # as a bomb. catch_warnings is process-global, but our own pixel check from the header
            # refuses anything this large with the default limits, so this is a second line only.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            result = _load(data, limits)
    except InputError as e:
        log.info("image refused: %s (%s) [%s]", e.code, e.detail, e.message(lang))
        raise
    log.debug("image accepted: %s %dx%d sha %s", result.format, result.width, result.height, result.sha256)
    return result


def _load(data: bytes | str | Path | Image.Image, limits: IntakeLimits) -> IntakeImage:
    if isinstance(data, Image.Image):
        fmt = (data.format or "PNG").upper()
        return _normalise(data, fmt, 0, limits)
    raw = _read(data, limits)
    with _open(raw, limits) as img:
        if img.format == "PNG":  # PNG carries CRCs: check them all (no decoding) on a second parse
            _verify(raw)
        fmt = (img.format or "").upper()
        if fmt not in ACCEPTED_FORMATS:  # pragma: no cover - _open only uses accepted plugins
            raise _err("image_unsupported_format", f"format {fmt}")
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated GIF/WebP, multi-image HEIF: the first frame
        return _normalise(img, fmt, len(raw), limits)


def load_images(
    items: Iterable[bytes | str | Path | Image.Image],
    *,
    lang: str = "en",
    limits: IntakeLimits | None = None,
    max_images: int = MAX_IMAGES,
) -> list[IntakeImage]:
    """Load every image of one question, in order. More than ``max_images`` is refused up front."""
    items = [i for i in items if i is not None]
    if len(items) > max_images:
        e = _err("too_many_images", f"{len(items)} > {max_images}")
        log.info("images refused: %s [%s]", e.detail, e.message(lang))
        raise e
    return [load_image(item, lang=lang, limits=limits) for item in items]


def as_pil(item: Any) -> Image.Image:
    """An RGB PIL image from what the engines accept as a photo: an ``IntakeImage`` (already checked),
    a PIL image, or anything ``load_image`` reads (checked here)."""
    if isinstance(item, IntakeImage):
        return item.image
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    return load_image(item).image
