"""Checks a photo the moment it is chosen, so a bad file is named at once, not at Solve.

The photo editor reads a chosen file in the browser and draws it on a canvas; a file the browser
cannot draw (a text file named ``.png``, a broken image, a HEIC photo in Chrome) leaves the editor
blank, nothing reaches the server, and the student learned only at Solve that there was no photo.
Here a small script (``PHOTO_CHECK_JS``, run once at page load) watches the editor's file input and
drops: when the browser cannot decode the chosen file (or it is larger or smaller than the intake's
pixel limits), it hands that file to a visually hidden upload
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
  const check = async (file) => {
    if (!file) return;
    let ok = false;
    try {
      const bitmap = await createImageBitmap(file);
      const w = bitmap.width, h = bitmap.height;
      bitmap.close();
      ok = w * h <= MAX_PIXELS && Math.min(w, h) >= MIN_SIDE;
    } catch (e) {
      ok = false;
    }
    if (!ok) send(file);  // the browser cannot draw it, or the intake will refuse it: let it say why
  };
  const inPhoto = (el) => el instanceof Element && !!el.closest('#r1v-photo');
  document.addEventListener('change', (ev) => {
    const t = ev.target;
    if (t instanceof HTMLInputElement && t.type === 'file' && inPhoto(t) && t.files) check(t.files[0]);
  }, true);
  document.addEventListener('drop', (ev) => {
    if (inPhoto(ev.target) && ev.dataTransfer && ev.dataTransfer.files) check(ev.dataTransfer.files[0]);
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
    box.upload(check_photo_file, [box, ui_lang], [editor, box], api_visibility="private", show_progress="hidden")
    work.upload(check_work_photo, [work, ui_lang], [work], api_visibility="private", show_progress="hidden")
    demo.load(None, None, None, js=PHOTO_CHECK_JS)
    return box
