"""Checks a photo the moment it is chosen, so a bad file is named at once, not at Solve.

The photo editor reads a chosen file in the browser and draws it on a canvas; a file the browser
cannot draw (a text file named ``.png``, a broken image, a HEIC photo in Chrome) leaves the editor
blank, nothing reaches the server, and the student learned only at Solve that there was no photo.
Here a small script (``PHOTO_CHECK_JS``, run once at page load) watches the editor's file input and
drops before the editor sees them: it reads the picture's size from the file's first bytes (PNG,
GIF, BMP, WebP, JPEG headers; nothing decoded, so a 12000x12000 PNG costs nothing), and only a file
within the intake's pixel limits is decoded once (``createImageBitmap``) to prove it can be drawn and
then passed on to the editor. A file outside the limits, or one the browser cannot decode, never
reaches the editor: the script hands it to a visually hidden upload
(``r1v-photo-check``), whose handler runs ``tutor.intake`` on it and says why it was refused, in the
page language (a warning toast), or, when the intake reads it (HEIC), puts the intake's picture into
the editor. Nothing else on the page changes: the question the student typed stays as it is.

The work photo (``gr.Image``) uploads the file itself; its upload handler warns with the intake's
message and clears the refused file. Wired by ``app.py``::

    from webui.upload_check import wire_upload_checks
    wire_upload_checks(demo, editor, work, ui_lang)    # inside the Blocks, after the components
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from tutor.errors import InputError
from tutor.intake import DEFAULT_LIMITS, load_image
from webui.components import Refused, SafeFile, not_uploaded, uploaded
from webui.i18n import norm_lang

log = logging.getLogger("r1v.app")

CHECK_ID = "r1v-photo-check"
PHOTO_TOOLS = "photo-tools"  # concurrency id of the page's photo tools (check, rotate, add): one decode at a time

# Runs once at page load. Listens on the document (capture), so it works whatever Svelte re-renders.
PHOTO_CHECK_JS = """
() => {
  if (window.__r1vPhotoCheck) return [];
  window.__r1vPhotoCheck = true;
  const send = (file) => {
    const box = document.querySelector('#CHECK_ID input[type=file]');
    if (!box || !file) return;
    const dt = new DataTransfer();
    dt.items.add(file);
    box.files = dt.files;
    box.dispatchEvent(new Event('change', {bubbles: true}));
  };
  // width and height from the file's first bytes (PNG, GIF, BMP, WebP, JPEG), nothing decoded; null if unknown
  const size = async (file) => {
    const b = new DataView(await file.slice(0, 65536).arrayBuffer());
    const n = b.byteLength, u8 = (i) => b.getUint8(i);
    if (n >= 24 && b.getUint32(0) === 0x89504E47 && b.getUint32(4) === 0x0D0A1A0A) return [b.getUint32(16), b.getUint32(20)];
    if (n >= 10 && u8(0) === 0x47 && u8(1) === 0x49 && u8(2) === 0x46) return [b.getUint16(6, true), b.getUint16(8, true)];
    if (n >= 26 && b.getUint16(0) === 0x424D) return [b.getInt32(18, true), Math.abs(b.getInt32(22, true))];
    if (n >= 30 && b.getUint32(0) === 0x52494646 && b.getUint32(8) === 0x57454250) {
      const kind = b.getUint32(12);
      if (kind === 0x56503858) return [1 + (u8(24) | u8(25) << 8 | u8(26) << 16), 1 + (u8(27) | u8(28) << 8 | u8(29) << 16)];
      if (kind === 0x56503820) return [b.getUint16(26, true) & 0x3fff, b.getUint16(28, true) & 0x3fff];
      if (kind === 0x5650384C) { const v = b.getUint32(21, true); return [1 + (v & 0x3fff), 1 + ((v >>> 14) & 0x3fff)]; }
    }
    if (n >= 4 && b.getUint16(0) === 0xFFD8) {
      let i = 2;
      while (i + 9 < n) {
        if (u8(i) !== 0xFF) { i++; continue; }
        const m = u8(i + 1);
        if (m === 0xFF) { i++; continue; }
        if (m >= 0xC0 && m <= 0xCF && m !== 0xC4 && m !== 0xC8 && m !== 0xCC) return [b.getUint16(i + 7), b.getUint16(i + 5)];
        if (m === 0xD8 || m === 0x01 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
        i += 2 + b.getUint16(i + 2);
      }
    }
    return null;
  };
  const fits = (w, h) => w * h <= MAX_PIXELS && Math.min(w, h) >= MIN_SIDE;
  // true when the editor can take the file; a header outside the limits is refused before any decoding
  const check = async (file) => {
    let wh = null;
    try { wh = await size(file); } catch (e) { wh = null; }
    if (wh && !fits(wh[0], wh[1])) return false;
    try {
      const bitmap = await createImageBitmap(file);  // within the limits: cheap, and proves it can be drawn
      const ok = fits(bitmap.width, bitmap.height);
      bitmap.close();
      return ok;
    } catch (e) {
      return false;
    }
  };
  const inPhoto = (el) => el instanceof Element && !!el.closest('#r1v-photo');
  const editorInput = () => document.querySelector('#r1v-photo input[type=file]');
  // hand a checked file to the editor through its own file input (our listener lets that event pass)
  const give = (input, file) => {
    if (!input) return;
    if (file) { const dt = new DataTransfer(); dt.items.add(file); input.files = dt.files; }
    input.__r1vChecked = true;
    input.dispatchEvent(new Event('change', {bubbles: true}));
  };
  const route = (file, input) => check(file).then((ok) => {
    if (ok) give(input, input && input.files && input.files[0] === file ? null : file);
    else { send(file); if (input) input.value = ''; }  // the editor never decodes it; the intake says why
  });
  // capture phase on the document: runs before the editor's own handlers, which see only checked files
  document.addEventListener('change', (ev) => {
    const t = ev.target;
    if (!(t instanceof HTMLInputElement && t.type === 'file' && inPhoto(t) && t.files && t.files[0])) return;
    if (t.__r1vChecked) { t.__r1vChecked = false; return; }
    ev.stopImmediatePropagation();
    route(t.files[0], t);
  }, true);
  document.addEventListener('drop', (ev) => {
    if (!(inPhoto(ev.target) && ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0])) return;
    ev.stopImmediatePropagation();
    ev.preventDefault();
    route(ev.dataTransfer.files[0], editorInput());
  }, true);
  return [];
}
""".replace("CHECK_ID", CHECK_ID).replace("MAX_PIXELS", str(DEFAULT_LIMITS.max_pixels)).replace(
    "MIN_SIDE", str(DEFAULT_LIMITS.min_side))


def check_photo_file(path: Any, ui_lang: Any) -> tuple[Any, Any]:
    """Handler of the hidden upload: (editor update, hidden upload cleared)."""
    lang = norm_lang(ui_lang)
    if not path:
        return gr.skip(), gr.skip()
    if not uploaded(path):
        gr.Warning(not_uploaded(path).message(lang))
        return gr.skip(), None
    try:
        img = load_image(path, lang=lang)
    except InputError as e:
        gr.Warning(e.message(lang))
        return gr.skip(), None
    log.info("photo the browser could not show was read by the intake (%s); shown in the editor", img.format)
    return {"background": img.image, "layers": [], "composite": img.image}, None


def check_work_photo(value: Any, ui_lang: Any) -> Any:
    """Handler of the work photo's upload: warn with the intake's message and clear a refused file."""
    if isinstance(value, Refused):
        gr.Warning(value.error.message(norm_lang(ui_lang)))
        return None
    return gr.skip()


def wire_upload_checks(demo: Any, editor: Any, work: Any, ui_lang: Any) -> Any:
    """Add the hidden upload, the handlers and the page-load script (see the module docstring);
    returns the hidden upload."""
    box = SafeFile(visible="hidden", elem_id=CHECK_ID, file_count="single", type="filepath", show_label=False)
    box.upload(check_photo_file, [box, ui_lang], [editor, box], api_visibility="private", show_progress="hidden",
               concurrency_limit=1, concurrency_id=PHOTO_TOOLS)
    work.upload(check_work_photo, [work, ui_lang], [work], api_visibility="private", show_progress="hidden")
    demo.load(None, None, None, js=PHOTO_CHECK_JS)
    return box
