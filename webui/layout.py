"""The page's layout fixes: CSS, small browser-side scripts and the wiring ``app.py`` calls into.

    from webui import layout
    css = CSS + layout.CSS                        # launch_kwargs
    editor = SafeImageEditor(..., **layout.EDITOR_TOOLS)
    layout.scroll_to_chat(ask, hint, ...)        # the reply is in view when it starts
    layout.clear_on_send(send, follow)            # the follow-up box empties when it is sent
    layout.banner_timer(app.status_md, ui_lang, banner, app.engine)

* Phone widths (``NARROW``): the two page columns become one, and the examples table goes below the
  chat (CSS ``order`` on the children of the left column, made ``display: contents``), so the chat
  follows the Solve button instead of sitting ~1,500 px below it; every button that starts a turn
  also scrolls the chat into view (a browser-only event, no server round trip).
* History cards (``tutor.thumbnail``) are shown whole, 16:10, with the caption inside the card.
* The ImageEditor gets brush and eraser options although the page hides those tools (CSS): with
  ``brush=False``/``eraser=False`` Gradio's toolbar binds an undefined size and Svelte throws
  ``props_invalid_value`` on every page load; the editor's value is the uploaded photo (cropped) as
  before.
* Model text cannot leave its box: each chat message and the answer panel are ``contain: paint;
  overflow: auto`` (the text itself is made inert by ``tutor.sanitize``).
* Feedback buttons show the chosen one (``variant="primary"``); a new attempt resets them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from tutor import thumbnail
from webui.i18n import t

NARROW = 640  # px: below this the page is one column

CSS = f"""
/* the chat's label floated over the messages (the first one, and any scrolled under it): it takes
   its own line above the scrolling messages instead */
#r1v-chat > .wrapper {{display: flex; flex-direction: column}}
#r1v-chat > .wrapper > [data-testid=block-label] {{position: static; flex: 0 0 auto; align-self: flex-start;
  margin: 0 0 4px 0}}
#r1v-chat > .wrapper > .bubble-wrap {{flex: 1 1 auto; min-height: 0}}
/* model text stays in its box: nothing in a message or the answer panel is painted outside it (contain:
   paint also makes the box the containing block of anything fixed or absolute inside); wide math scrolls */
#r1v-chat [data-testid=bot], #r1v-chat [data-testid=user], #r1v-answer [data-testid=markdown] {{
  contain: paint; overflow: auto}}
/* the work photo's upload icon was cut by its label */
#r1v-work {{height: 230px !important}}
#r1v-work .image-container, #r1v-work [data-testid="image"] {{padding-top: 1.6em}}
/* the slider's label breaks between words only (a CJK label stays whole): the number box wraps below it */
#r1v-n .head {{flex-wrap: wrap; row-gap: 4px}}
#r1v-n .head > label {{flex: 1 1 auto}}
#r1v-n .head > label, #r1v-n [data-testid="block-info"] {{word-break: keep-all; overflow-wrap: normal}}
/* the photo editor: only the image tool (brush and eraser exist only to keep Gradio's toolbar valid) */
#r1v-photo .toolbar-wrap .half-container:first-child > button:not(:first-of-type) {{display: none}}
/* history cards: whole (16:10), with their caption under the card, inside the item */
#r1v-history-list .grid-wrap.fixed-height {{min-height: 0}}
#r1v-history-list .thumbnail-item {{aspect-ratio: auto; height: auto; display: flex; flex-direction: column}}
#r1v-history-list .thumbnail-item > img {{aspect-ratio: 16 / 10; height: auto; object-fit: contain}}
#r1v-history-list .caption-label {{position: static; max-width: 100%; border: 0; border-radius: 0;
  font-size: var(--text-sm); padding: 3px 6px; opacity: 1; white-space: normal; overflow-wrap: anywhere}}
#r1v-history-empty {{color: var(--body-text-color-subdued)}}
@media (max-width: {NARROW}px) {{
  #r1v-main {{flex-direction: column}}
  #r1v-main > #r1v-left {{display: contents}}
  #r1v-main > #r1v-right {{order: 1; width: 100%}}
  #r1v-main > #r1v-left > #r1v-examples {{order: 2}}
  #r1v-main > #r1v-left > * {{width: 100%}}
  #r1v-history-list .grid-container {{--grid-cols: 2 !important}}
}}
"""

# Scroll the chat into view (the least scroll that shows it: it is shorter than a phone screen).
# Smooth but short; run after the click handler's own layout changes.
# Once more when the turn's first reply appears (the page above the chat may have moved since the
# click): instantly and centred, so the reply is in view as it starts. The watch ends then, or after 2 minutes.
SCROLL_JS = """() => {
  const chat = document.getElementById('r1v-chat');
  if (!chat) return;
  requestAnimationFrame(() => chat.scrollIntoView({behavior: 'smooth', block: 'nearest'}));
  const lastReply = () => [...chat.querySelectorAll('[data-testid=bot]')].at(-1) || null;
  const before = lastReply();  // a new last reply (also after the chat was reset for a new problem)
  if (window.__r1vReplyWatch) window.__r1vReplyWatch.disconnect();
  const watch = new MutationObserver(() => {
    const now = lastReply();
    // centred, not 'nearest': nearest puts the chat's bottom edge, where the new reply begins, on the
    // screen's bottom edge, so the reply's first line can be cut off there
    if (now && now !== before) { watch.disconnect(); chat.scrollIntoView({behavior: 'auto', block: 'center'}); }
  });
  window.__r1vReplyWatch = watch;
  watch.observe(chat, {subtree: true, childList: true});
  setTimeout(() => watch.disconnect(), 120000);
}"""

EDITOR_TOOLS: dict[str, Any] = {
    "brush": gr.Brush(colors=["#000000"], color_mode="fixed", default_size=4),
    "eraser": gr.Eraser(default_size=12),
}


# The photo editor's one visible tool button is announced by Gradio as just "Image": name it for what it
# does, in the page's language (<html lang>, which webui.locale keeps), whenever Svelte redraws it.
PHOTO_TOOL_JS = """() => {
  if (window.__r1vToolNames) return [];
  window.__r1vToolNames = true;
  const names = {en: "PHOTO_EN", zh: "PHOTO_ZH"};
  const name = () => {
    const want = (document.documentElement.lang || 'en').toLowerCase().startsWith('zh') ? names.zh : names.en;
    for (const b of document.querySelectorAll('#r1v-photo button[aria-label="Image"], #r1v-photo button[data-r1v-tool]')) {
      if (b.getAttribute('aria-label') !== want) { b.setAttribute('aria-label', want); b.title = want; }
      b.setAttribute('data-r1v-tool', 'image');
    }
  };
  new MutationObserver(name).observe(document.documentElement, {subtree: true, childList: true, attributes: true,
                                                              attributeFilter: ['lang']});
  name();
  return [];
}"""


def name_photo_tool(demo: Any) -> None:
    """Give the photo editor's image tool a spoken name in the page language (see ``PHOTO_TOOL_JS``)."""
    js = PHOTO_TOOL_JS.replace("PHOTO_EN", t("photo_tool", "en")).replace("PHOTO_ZH", t("photo_tool", "zh"))
    demo.load(None, None, None, js=js)


def scroll_to_chat(*buttons: Any) -> None:
    """Each button (or textbox: its submit) also scrolls the chat into view when it is used."""
    for b in buttons:
        trigger = b.submit if isinstance(b, gr.Textbox) else b.click
        trigger(None, None, None, js=SCROLL_JS, queue=False, api_visibility="private")


def clear_on_send(send: Any, box: Any) -> None:
    """The box empties when its text is sent (the turn's own event registered first has read it)."""
    for trigger in (send.click, box.submit):
        trigger(None, None, box, js="() => ''", queue=False, api_visibility="private")


def feedback_states(ok: bool, up: bool) -> tuple[dict, dict]:
    """Updates of the 👍 and 👎 buttons: the chosen one primary after a saved vote, both plain else."""
    if not ok:
        return gr.update(variant="secondary"), gr.update(variant="secondary")
    return (gr.update(variant="primary" if up else "secondary"),
            gr.update(variant="secondary" if up else "primary"))


def feedback_reset() -> tuple[dict, dict]:
    return feedback_states(False, True)


def banner_timer(status_md: Callable[[str], str], ui_lang: Any, banner: Any, engine: Any,
                 every: float = 5.0) -> gr.Timer:
    """A timer refreshing the model banner until the model is loaded and healthy (then it stops), so a
    page opened while the model loads or the server is down shows when it is ready without a reload."""
    timer = gr.Timer(every)

    def tick(lang: str) -> tuple[str, Any]:
        return banner_tick(status_md, engine, lang)

    timer.tick(tick, ui_lang, [banner, timer], queue=False, api_visibility="private", show_progress="hidden")
    return timer


def banner_tick(status_md: Callable[[str], str], engine: Any, lang: str) -> tuple[str, Any]:
    """The banner now, and the timer kept running while the model is not loaded or not reachable."""
    h = engine.health()
    ready = bool(h.get("ok")) and bool(h.get("loaded", True))
    return status_md(lang), gr.Timer(active=not ready)


def thumb_dir(store: Any) -> Path:
    """Where the history cards are cached: next to the photos (already served by content hash)."""
    return Path(store.image_dir) / "thumbs"


def history_card(summary: Any, photo: Path | None, answer: str | None, lang: str, cache_dir: Path) -> str:
    """The path of one problem's history card (``tutor.thumbnail``): photo content, subject, number,
    answer, date; the subject in the page language when the shipped fonts have its characters."""
    def title(lng: str) -> str:
        subj = summary.subject
        name = t(subj, lng) if subj in ("math", "physics", "chemistry", "biology") else (subj or "")
        return f"{name} | #{summary.number}" if name else f"#{summary.number}"

    date = summary.created_at.strftime("%Y-%m-%d %H:%M") if getattr(summary, "created_at", None) else ""
    usable = photo if photo is not None and Path(photo).exists() else None
    return str(thumbnail.card(usable, cache_dir, title=[title(lang), title("en")], answer=answer, date=date,
                              question=summary.question or ""))


def empty_note(items: Any, lang: str) -> dict:
    """The "No problems yet" line under an empty history list (hidden once there is one)."""
    return gr.update(value=t("history_empty", lang), visible=not items)
