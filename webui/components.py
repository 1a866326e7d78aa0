"""The page's input components, guarded: they read only files this visitor uploaded.

``SafeImageEditor``, ``SafeImage`` and ``SafeGallery`` refuse an input that names a server file
instead of uploading one (another visitor's stored photo, the database: ``PRIVATE_DIRS``), and turn
a bad file into the intake's specific message (``Refused``, raised by ``unrefused`` inside the
handler, where it becomes the page-language error). Nothing decodes an image before the project's
own check: each runs ``tutor.intake.check_header`` (size, format, pixel count from the header, in
milliseconds) on every file before Gradio's preprocessing, which decodes them all (the editor: the
background, each layer and the composite; a 12000 x 12000 PNG took 10 s here, three
``DecompressionBombWarning``, before the intake refused it). The editor decodes only what the page
uses: the composite (the background only without one), never blank layers when nothing can be drawn.
``Chatbot`` and ``Gallery`` hash an unchanged file once (``webui.blocks.FileMemo``). Used by
``app.py``::

    from webui.components import PRIVATE_DIRS, SafeImageEditor, editor_image
    PRIVATE_DIRS.add(store.image_dir.resolve())
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils as gr_utils

from tutor.errors import InputError
from tutor.intake import check_header, load_image
from webui.blocks import FileMemo, StockFrontend

log = logging.getLogger("r1v.app")


class Refused:
    """Stands in for an uploaded image that was refused while Gradio preprocessed it."""

    def __init__(self, error: InputError):
        self.error = error


def uploaded(path: Any) -> bool:
    """Is ``path`` a file this server received as an upload (Gradio's upload folder)? Anything else,
    e.g. the path of another visitor's stored photo sent through the API, must not be read."""
    try:
        p = Path(str(path)).resolve()
        return p.is_relative_to(Path(gr_utils.get_upload_folder()).resolve())
    except (OSError, ValueError, TypeError):
        return False


def not_uploaded(path: Any) -> InputError:
    return InputError("image_not_uploaded", "This photo was not uploaded from your device. Please upload it again.",
                      "这张照片不是从你的设备上传的，请重新上传。", f"path {str(path)[:80]!r}")


def _refusal(files: list[Any], error: Exception | None = None) -> Refused:
    """Why a preprocessed image failed, as the intake's specific message (a foreign path, a bad file)."""
    found = _first_refused(files, load_image)
    if found is not None:
        return found
    log.info("image preprocessing failed: %r", error)
    return Refused(InputError("image_corrupt", "The image is damaged or incomplete and cannot be read.",
                               "图片已损坏或不完整，无法读取。", repr(error)))


def _source(f: Any) -> Any:
    """What ``check_header`` reads for one input file: the canvas blob's bytes (what the browser's
    editor sends), the uploaded file's path, or None."""
    if isinstance(f, bytes | bytearray | memoryview):
        return bytes(f)
    url = getattr(f, "url", None)
    return getattr(f, "path", None) or (url if isinstance(url, str) and url.startswith("data:") else None)


def _is_path(src: Any) -> bool:
    return isinstance(src, str) and not src.startswith("data:")


def header_refusal(files: list[Any]) -> Refused | None:
    """``Refused`` for the first file whose header fails ``tutor.intake.check_header`` (or that names a
    server file rather than an upload), else None. Decodes nothing."""
    return _first_refused(files, check_header)


def _first_refused(files: list[Any], check: Any) -> Refused | None:
    """``Refused`` for the first file that names a server file rather than an upload, or that ``check``
    (the intake's header check, or its full load) refuses; else None."""
    for f in files:
        src = _source(f)
        if src is None:
            continue
        if _is_path(src) and not uploaded(src):
            return Refused(not_uploaded(src))
        try:
            check(src)
        except InputError as e:
            return Refused(e)
    return None


PRIVATE_DIRS: set[Path] = set()  # the photo store and data directory: never read as an input


class _NoPrivateFiles(StockFrontend):
    """Refuses, before Gradio copies it into its cache, an input that names a file in ``PRIVATE_DIRS``
    (another visitor's stored photo, the database) instead of uploading one."""

    def _guard(self, path: Any) -> None:
        try:
            p = Path(str(path)).resolve()
        except (OSError, ValueError):
            return
        if any(p.is_relative_to(d) for d in PRIVATE_DIRS):
            log.warning("refused an input naming a private file: %s", p)
            raise gr.Error(not_uploaded(path).message("en") + " / " + not_uploaded(path).message("zh"))

    def move_resource_to_block_cache(self, url_or_file_path: Any) -> Any:
        self._guard(url_or_file_path)
        return super().move_resource_to_block_cache(url_or_file_path)  # type: ignore[misc]

    async def async_move_resource_to_block_cache(self, url_or_file_path: Any) -> Any:
        self._guard(url_or_file_path)
        return await super().async_move_resource_to_block_cache(url_or_file_path)  # type: ignore[misc]


class Chatbot(FileMemo, gr.Chatbot):
    """``gr.Chatbot`` that hashes an unchanged photo in the chat once, not on every streamed update."""


class Gallery(FileMemo, gr.Gallery):
    """``gr.Gallery`` that hashes each unchanged picture once (the history list, sent after every turn)."""


class SafeGallery(_NoPrivateFiles, gr.Gallery):
    """``gr.Gallery`` whose pictures pass the header check before anything reads them; a refused one is
    handed on as ``Refused`` (``unrefused`` in the handler raises its message)."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        if payload is None or not payload.root:
            return None
        out, keep = [], []
        for item in payload.root:
            image = getattr(item, "image", None)
            bad = header_refusal([image]) if image is not None else None
            out.append(bad)
            if bad is None:
                keep.append(item)
        done = iter(super().preprocess(type(payload)(root=keep)) or []) if keep else iter(())
        return [(bad, getattr(item, "caption", None)) if bad is not None else next(done)
                for bad, item in zip(out, payload.root, strict=True)]


class SafeFile(_NoPrivateFiles, gr.File):
    """``gr.File`` with the guard against inputs naming a private server file."""

    is_template = True


class SafeImageEditor(_NoPrivateFiles, gr.ImageEditor):
    """``gr.ImageEditor`` that reads uploaded files only and turns a bad file into the intake's message
    (the stock one opens any server path it is sent and fails with a bare error on a non-image)."""

    is_template = True  # the frontend uses the stock editor

    def preprocess(self, payload: Any) -> Any:
        if payload is None:
            return None
        src = self.blob_storage.get(payload.id) if payload.id is not None else None
        src = src if src is not None else payload  # the browser sends canvas blobs first, then an id
        files = [src.background, src.composite, *(src.layers or [])]
        bad = header_refusal(files)
        if bad is None and src.composite is not None:
            src.background = None  # the page uses the composite: decode it alone
        if bad is None and not self.brush and not self.eraser:
            src.layers = []  # nothing can be drawn: every layer is blank
        if bad is not None:
            self.blob_storage.pop(payload.id, None) if payload.id is not None else None
            return {"background": bad, "layers": [], "composite": bad}
        try:
            return super().preprocess(payload)
        except Exception as e:  # noqa: BLE001 - becomes the specific intake message
            bad = _refusal(files, e)
            return {"background": bad, "layers": [], "composite": bad}


class SafeImage(_NoPrivateFiles, gr.Image):
    """``gr.Image`` with the same guard as :class:`SafeImageEditor`."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        bad = header_refusal([payload]) if payload is not None else None
        if bad is not None:
            return bad
        try:
            return super().preprocess(payload)
        except Exception as e:  # noqa: BLE001 - becomes the specific intake message
            return _refusal([payload], e)


def unrefused(value: Any) -> Any:
    if isinstance(value, Refused):
        raise value.error
    return value


def placeholder() -> str:
    path = Path(tempfile.gettempdir()) / "r1v-no-photo.png"
    if not path.exists():
        from PIL import Image

        Image.new("RGB", (96, 96), (235, 238, 245)).save(path)
    return str(path)


def editor_image(value: Any) -> Any:
    """The edited photo (composite, else background); raises the refusal of a bad upload."""
    if not isinstance(value, dict):
        return unrefused(value)
    return unrefused(value.get("composite") if value.get("composite") is not None else value.get("background"))


def rotate(value: Any, angle: int) -> Any:
    try:
        img = editor_image(value)
    except InputError as e:
        gr.Warning(e.message("en"))
        return gr.skip()
    if img is None:
        return gr.skip()
    img = img.rotate(angle, expand=True)
    return {"background": img, "layers": [], "composite": img}


class BudgetSlider(StockFrontend, gr.Slider):
    """The thinking-budget slider (``webui.budget``): its value reaches the handler unchecked, because
    Gradio's own out-of-range error is English only; ``tutor.limits.check_budget`` refuses it in the
    page's language."""

    def preprocess(self, payload: Any) -> Any:
        return payload
