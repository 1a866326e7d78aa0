"""Gradio's own interface strings ("Drop Image Here", "Click to Upload", toasts, the footer) in the page's
language, not the browser's.

Gradio's front end translates its strings with svelte-i18n, whose locale it takes from
``navigator.language`` once, when the page starts, and hands to every component as it is created: a
later ``changeLocale`` reaches the footer but not the components already on the page (checked in
headless Chromium, Gradio 6.31). So the page's language toggle persists the chosen Gradio locale in
``localStorage[STORAGE_KEY]`` and reloads the page when Gradio's locale differs from it; a tiny
script that :class:`LocaleScript` puts at the top of every page's ``<head>`` (before Gradio's own
scripts) makes ``navigator.language`` report that locale, so the new page starts in it. A browser
that already asks for the page's language never reloads. Used by ``app.py``::

    from webui import locale
    launch(..., app_kwargs={"middleware": [locale.middleware()]}, i18n=locale.gradio_i18n(), css=CSS + locale.CSS)
    ui_lang.change(...).then(None, [ui_lang], None, js=locale.SYNC_JS)   # on_load sets ui_lang: it runs then too

``CSS`` also replaces the one string Gradio does not translate at all: the "Pages:" in front of the
examples table's page numbers (hidden, and written in the page's language from ``<html lang>``,
which svelte-i18n keeps equal to its locale).
"""

from __future__ import annotations

import json

import gradio as gr
from starlette.middleware import Middleware

STORAGE_KEY = "r1v_locale"
OLD_VISITOR_KEY = "r1v_visitor"  # where the page kept the visitor id before issue 22 (webui.legacy_id)
GRADIO_LOCALES = {"zh": "zh-CN", "en": "en"}  # our language -> Gradio's locale (its lang/*.json)
RELOAD_GUARD_S = 15  # at most one reload for the locale in this many seconds (no loop if it does not take)

# The persisted locale, else the browser's first zh/en language as the page picks it (webui.i18n
# lang_from_header), else English: Gradio starts in the page's language even for a "fr" browser.
BOOT_SCRIPT = (
    "<script>(function(){try{var l=localStorage.getItem(__KEY__);"
    "if(l!=='zh-CN'&&l!=='en'){var b=(navigator.languages||[navigator.language]).find(function(x){"
    "return /^(zh|en)/i.test(x||'')})||'en';l=/^zh/i.test(b)?'zh-CN':'en';}"
    "var d=function(v){return{get:function(){return v},configurable:true}};"
    "Object.defineProperty(navigator,'language',d(l));Object.defineProperty(navigator,'languages',d([l]));"
    "}catch(e){}})();</script>"
).replace("__KEY__", json.dumps(STORAGE_KEY))

# js= of an event whose first input is the page language ("zh"/"en"): persist it as Gradio's locale, and
# switch Gradio to it in place: ``changeLocale`` from Gradio's core module (already loaded: the same module
# instance), then the text nodes the components wrote in the old locale (the upload prompts) are replaced
# by the same keys' strings in the new one. If any of that fails, the page reloads (at most once per
# RELOAD_GUARD_S) and starts in the persisted locale.
SYNC_JS = """async (lang) => {
  if (lang !== 'zh' && lang !== 'en') return [];
  const want = __LOCALES__[lang === 'zh' ? 'zh' : 'en'];
  const ok = () => (document.documentElement.lang || 'en').toLowerCase().startsWith(want === 'en' ? 'en' : 'zh');
  try { localStorage.setItem(__KEY__, want); } catch (e) { return []; }
  if (ok()) return [];
  try {
    const url = performance.getEntriesByType('resource').map((e) => e.name)
      .find((n) => /\\/assets\\/core-[^/]*\\.js(\\?|$)/.test(n));
    const m = await import(url);
    const read = (st) => { let f = null; try { st.subscribe((v) => { f = v; })(); } catch (e) {} return f; };
    const store = Object.values(m).find((v) => v && typeof v.subscribe === 'function' &&
      typeof read(v) === 'function' && typeof read(v)('upload_text.drop_image') === 'string');
    const en = Object.values(m).find((v) => v && typeof v === 'object' && v.upload_text && typeof v.upload_text.drop_image === 'string');
    if (!store || !en || typeof m.changeLocale !== 'function') throw new Error('no Gradio i18n');
    const fmt = () => read(store);
    const flat = (o, p) => Object.entries(o).flatMap(([k, v]) => v && typeof v === 'object' ? flat(v, p + k + '.') : [p + k]);
    const keys = flat(en, '').filter((k) => /^(image|image_editor|upload_text|file|gallery|common|dataframe|chatbot)\\./.test(k));
    const before = fmt();
    const old = new Map(keys.map((k) => [before(k), k]).filter(([s, k]) => s && s !== k));
    m.changeLocale(want);
    for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
    if (!ok()) throw new Error('locale did not change');
    const now = fmt(), known = new Set(keys);  // also a raw key written while the new strings loaded
    const root = document.querySelector('gradio-app') || document.body;
    const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const s = n.nodeValue.trim(), k = old.get(s) || (known.has(s) ? s : null), to = k ? now(k) : null;
      if (to && to !== k && !n.parentElement.closest('#r1v-chat, #r1v-answer, .prose, textarea')) {
        n.nodeValue = n.nodeValue.replace(s, to);
      }
    }
  } catch (e) {
    console.warn('r1v: switching the Gradio locale in place failed, reloading:', e);
    const last = Number(sessionStorage.getItem('r1v_locale_reload') || 0);
    if (Date.now() - last < __GUARD_MS__) return [];
    sessionStorage.setItem('r1v_locale_reload', String(Date.now()));
    setTimeout(() => window.location.reload(), 300);
  }
  return [];
}""".replace("__LOCALES__", json.dumps(GRADIO_LOCALES)).replace("__KEY__", json.dumps(STORAGE_KEY)).replace(
    "__GUARD_MS__", str(RELOAD_GUARD_S * 1000))

# js= of the page's load event, whose inputs are (the old page's stored visitor id, stored page language):
# the visitor id the page kept before issue 22 (localStorage r1v_visitor) goes to the server once, for
# webui.legacy_id; the language the toggle last persisted wins (it is written before a reload, which
# the encrypted BrowserState may not be).
LOAD_JS = """(old, stored) => {
  let id = '';
  try { id = localStorage.getItem(__OLD__) || ''; } catch (e) {}
  try { const l = localStorage.getItem(__KEY__); if (l) return [id, l.startsWith('zh') ? 'zh' : 'en']; }
  catch (e) {}
  return [id, stored];
}""".replace("__KEY__", json.dumps(STORAGE_KEY)).replace("__OLD__", json.dumps(OLD_VISITOR_KEY))

# js= after the load: the old visitor id leaves the browser (the server has moved its history).
FORGET_OLD_ID_JS = """() => { try { localStorage.removeItem(__OLD__); } catch (e) {} return []; }""".replace(
    "__OLD__", json.dumps(OLD_VISITOR_KEY))

CSS = """
#r1v-examples .paginate {visibility: hidden; font-size: 0}
#r1v-examples .paginate > * {visibility: visible; font-size: var(--text-md)}
#r1v-examples .paginate::before {visibility: visible; font-size: var(--text-md); content: "Pages:"; margin-right: .3em}
html[lang^="zh"] #r1v-examples .paginate::before {content: "页码："}
"""

# Gradio strings the page shows that its zh-CN.json leaves in English (keys of its lang/en.json).
MISSING_ZH = {
    "image_editor.upload_image": "上传图片",
    "common.complete": "完成",
    "image_editor.select_draw_tool": "选择画笔工具开始",  # shown since the editor keeps its brush (webui.layout)
}


def gradio_i18n() -> gr.I18n:
    """``launch(i18n=...)``: Gradio's own strings its Chinese translation lacks."""
    return gr.I18n(**{"zh-CN": dict(MISSING_ZH)})


_SKIP = ("/gradio_api/", "/assets/", "/static/", "/file=", "/favicon", "/manifest")


class LocaleScript:
    """ASGI middleware: puts :data:`BOOT_SCRIPT` first in the ``<head>`` of the app's HTML pages (the
    page itself, not files, API answers or streams)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if not path or scope.get("method") != "GET" or any(s in path for s in _SKIP):
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def wrapped(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if not headers.get(b"content-type", b"").startswith(b"text/html") or b"content-encoding" in headers:
                    start = None
                    await send(message)
                    wrapped.passthrough = True  # type: ignore[attr-defined]
                    return
                start = message
                return
            if getattr(wrapped, "passthrough", False) or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = inject(b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, wrapped)


def inject(body: bytes) -> bytes:
    """The page with :data:`BOOT_SCRIPT` right after its ``<head>`` (unchanged when it has none)."""
    at = body.find(b"<head>")
    if at < 0:
        return body
    at += len(b"<head>")
    return body[:at] + BOOT_SCRIPT.encode() + body[at:]


def middleware() -> Middleware:
    """The :class:`LocaleScript` middleware, for ``launch(app_kwargs={"middleware": [...]})``."""
    return Middleware(LocaleScript)
