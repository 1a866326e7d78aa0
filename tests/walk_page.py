"""Page-driving helpers for ``tests/test_walkthrough.py``: a student's whole session, step by step.

    page = open_page(browser, url, lang="en", width=390)
    chunks = visible_texts(page)                   # every rendered text, tagged with its page region
    problems = language_problems(chunks, "en")     # strings in the other language, by the rule below
    view = in_view(page, SEL["bot_msg"])           # how much of the element a student sees

Every selector and element id the walk relies on is in :data:`SEL` (CSS) or :data:`KEYS` (a control
found by its label in the page language, ``webui.i18n.t``), so a changed layout is adapted in one
place. A control listed in both is looked up by its element id first, then by its label.

The language rule (:func:`language_problems`), applied to the text a student can see (rendered and at
least 2x2 px: screen-reader-only text is not seen, it is checked as an accessible name elsewhere):

- left out: the student's own messages (their text and photos), the model's thinking block, typeset
  math (KaTeX), and the language names in the language switches, which are shown in their own
  language on purpose ("中文" on the English page, "English" on the Chinese one);
- English page: no CJK character (ideographs, CJK punctuation, full-width forms) anywhere else:
  labels, buttons, tables, captions, toasts, the tutor's replies (the reply language is English);
- Chinese page: none of the known English interface strings (:func:`english_ui_strings`: every
  English string of ``webui.i18n`` and of the tutor's own replies that differs from its Chinese
  one, cut at its format fields, plus Gradio's own English words from the issue) appears as a
  whole phrase; and every reply of the tutor that is not pure math has a CJK character. English
  that is not an interface string (the model name, ``--model r1v2-38b-nf4``, "HTML") is allowed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from webui.i18n import STRINGS, t

# -- selectors ---------------------------------------------------------------------------------------

SEL = {
    "banner": "#r1v-status-banner",
    "lang_switch": "#r1v-ui-lang",
    "photo": "#r1v-photo",
    "photo_input": "#r1v-photo input[type=file]",
    "photo_loaded": "#r1v-photo canvas, #r1v-photo img",
    "question": "#r1v-question textarea",
    "solve": "#r1v-ask-btn",
    "stop": "#r1v-stop-btn",
    "chat": "#r1v-chat",
    "chat_label": "#r1v-chat [data-testid=block-label]",
    "bot_msg": "#r1v-chat [data-testid=bot]",
    "user_msg": "#r1v-chat [data-testid=user]",
    "thinking": ".thought-group",
    "thinking_title": ".thought-group .title",
    "answer": "#r1v-answer",
    "status": "#r1v-status",
    "history": "#r1v-history",
    "history_toggle": "#r1v-history > button.label-wrap",
    "history_list": "#r1v-history-list",
    "history_item": "#r1v-history-list .thumbnail-item",
    "history_caption": ".caption-label",
    "history_msg": "#r1v-history [data-testid=markdown]",
    "export_link": "#r1v-history a[download], #r1v-history a[href$='.html']",
    "example_img": "table[role=grid] img[src*='{name}']",
    "examples_table": "table[role=grid]",
    "block_label": "[data-testid=block-label]",
    "math": ".katex, .katex-display, math",
    "sr_only": ".sr-only",
    "toast": ".toast-body, [data-testid=toast-body]",
}

# Controls found by element id when the page gives one (first), else by their label in the page
# language: (element id selector, i18n key, how the label is shown).
KEYS = {
    "hint": ("#r1v-hint-btn", "hint", "button"),
    "practice": ("#r1v-practice-btn", "practice", "button"),
    "check": ("#r1v-check-btn", "check", "button"),
    "answer_practice": ("#r1v-answer-practice-btn", "answer_practice", "button"),
    "send": ("#r1v-send-btn", "send", "button"),
    "delete": ("#r1v-delete-btn", "delete", "button"),
    "export": ("#r1v-export-btn", "export", "button"),
    "refresh": ("#r1v-refresh-btn", "refresh", "button"),
    "my_answer": ("#r1v-my-answer textarea", "my_answer_ph", "placeholder"),
    "followup": ("#r1v-followup textarea", "followup_ph", "placeholder"),
    "comment": ("#r1v-comment textarea", "comment", "placeholder"),
    "up": ("#r1v-up-btn", "up", "button"),
    "down": ("#r1v-down-btn", "down", "button"),
    "work_photo": ("#r1v-work", "work_photo", "block"),
    "n": ("#r1v-n", "n", "block"),
}

LOCALE = {"zh": "zh-CN", "en": "en-US"}
CJK = re.compile(r"[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
ENDONYMS = {"zh": ("English",), "en": ("中文",)}  # language names, shown in their own language

# Gradio's own English words the issue saw on the Chinese page (and their neighbours).
GRADIO_EN = ("Upload an image", "Drop Image Here", "Click to Upload", "Drop File Here", "Pages", "File",
             "Done in", "Final answer", "Examples", "Loading", "Clear", "Download", "Copy", "Share",
             "Use via API", "Built with Gradio", "Settings", "Paste from clipboard", "Webcam", "Upload",
             "Image", "Gallery", "Chatbot", "Textbox", "Radio", "Dropdown", "Slider", "Error", "Retry",
             "Undo", "Submit", "Fullscreen", "Select", "Remove", "No problems yet")

# Verdict words of a check reply (its first paragraph), and the markers of a confidence statement.
VERDICT = {
    "en": {"negative": r"\bnot correct\b|\bincorrect\b|\bwrong\b|\bnot right\b",
           "positive": r"(?<!not )(?<!in)\bcorrect\b|\bright\b",
           "unsure": r"not sure|unsure|cannot tell|can't tell|not certain|step by step|let's check"},
    "zh": {"negative": r"不正确|不对|错误|错了",
           "positive": r"(?<!不)正确|(?<!不)对(?!比)",
           "unsure": r"不确定|没有把握|无法判断|不能确定|一步步|逐步|一起检查|核对一下"},
}
# The tutor takes back an answer it showed (it knows better now: an exact answer, or more candidates)
RETRACTS = r"showed earlier .{0,40}? was wrong|之前给出的答案.{0,40}?是错的"

CONFIDENCE = {
    "en": r"confiden|\bsure\b|certain|\bagree|candidate|likely|exactly|reward|trust|verif|\d+ of \d+|%",
    "zh": r"把握|确定|信心|置信|一致|候选|可能|确信|核对|验证|精确|\d+\s*/\s*\d+|%|个里",
}


def english_ui_strings() -> list[str]:
    """Known English interface phrases (see the module docstring): i18n, the tutor's replies, Gradio."""
    from tutor import replies, session

    pairs = [(en, zh) for en, zh in STRINGS.values() if en != zh]
    pairs += [(v, replies._SAY["zh"][k]) for k, v in replies._SAY["en"].items()]
    zh_words = session._words("zh")
    pairs += [(v, zh_words[k]) for k, v in session._words("en").items()]
    out: set[str] = set(GRADIO_EN)
    for text, zh in pairs:
        for part in re.split(r"\{[^}]*\}|[`*_$]|\n", text):
            part = part.strip(" .:;,()…!?–-\"'“”")
            # whole phrases of two or more words; not one the Chinese string shows too (a command, a name)
            if len(part.split()) >= 2 and re.search(r"[A-Za-z]{3}", part) and part not in zh:
                out.add(part)
    return sorted(out, key=len, reverse=True)


# -- page ----------------------------------------------------------------------------------------------

def open_page(browser: Any, url: str, *, lang: str, width: int, height: int, model: str = "mini",
              console: list | None = None) -> Any:
    """A fresh visitor (new browser context, so a new visitor id) in the browser language ``lang``."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, locale=LOCALE[lang],
                              accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    if console is not None:
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.goto(url, wait_until="load")
    page.wait_for_function(f"() => (document.querySelector('{SEL['banner']}')?.innerText || '').includes('{model}')")
    page.wait_for_timeout(300)
    return page


def control(page: Any, name: str, lang: str) -> Any:
    """The locator of a control of :data:`KEYS`, by element id when present, else by its label."""
    sel, key, how = KEYS[name]
    loc = page.locator(sel)
    if loc.count():
        return loc.first
    label = t(key, lang)
    if how == "button":
        return page.get_by_role("button", name=label, exact=True).first
    if how == "placeholder":
        return page.get_by_placeholder(label, exact=True).first
    lab = page.locator(SEL["block_label"], has_text=label).first
    return lab.locator("xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' block ')][1]")


_TEXTS_JS = """(sel) => {
  const out = [];
  const seen = el => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width >= 2 && r.height >= 2 && s.visibility !== 'hidden' && s.opacity !== '0'; };
  const region = el => {
    if (el.closest(sel.math)) return 'math';
    if (el.closest(sel.user)) return 'user';
    if (el.closest(sel.thinking) && !el.closest(sel.thinking_title)) return 'thinking';
    if (el.closest(sel.bot)) return 'bot';
    if (el.closest(sel.lang_switch)) return 'lang_switch';
    if (el.closest(sel.answer)) return 'answer';
    if (el.closest(sel.history_list)) return 'history';
    if (el.closest(sel.examples)) return 'examples';
    return 'page';
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let n;
  while ((n = walker.nextNode())) {
    const text = n.textContent.trim();
    const el = n.parentElement;
    if (!text || !el || el.closest('script, style, noscript, template, annotation')) continue;
    if (!seen(el) || el.closest(sel.sr_only)) continue;
    out.push({text, region: region(el)});
  }
  for (const el of document.querySelectorAll('input[placeholder], textarea[placeholder]')) {
    if (seen(el) && !el.value) out.push({text: el.placeholder, region: region(el)});
  }
  return out;
}"""


def visible_texts(page: Any) -> list[dict]:
    """Every text a student can see on the page, as ``{"text", "region"}`` (see the module docstring)."""
    sel = {"math": SEL["math"], "user": SEL["user_msg"], "thinking": SEL["thinking"],
           "thinking_title": SEL["thinking_title"], "bot": SEL["bot_msg"], "lang_switch": SEL["lang_switch"],
           "answer": SEL["answer"], "history_list": SEL["history_list"], "examples": SEL["examples_table"],
           "sr_only": SEL["sr_only"]}
    return page.evaluate(_TEXTS_JS, sel)


def _strip_endonyms(text: str, lang: str) -> str:
    for name in ENDONYMS[lang]:
        text = text.replace(name, "")
    return text


def language_problems(chunks: list[dict], lang: str, english: list[str] | None = None) -> list[str]:
    """The strings a student sees in the other language (the rule of the module docstring)."""
    checked = [c for c in chunks if c["region"] not in ("user", "thinking", "math")]
    found: list[str] = []
    if lang == "en":
        for c in checked:
            if CJK.search(_strip_endonyms(c["text"], "en")):
                found.append(f"{c['region']}: {c['text'][:80]}")
    else:
        english = english if english is not None else english_ui_strings()
        pats = [(e, re.compile(r"(?<![A-Za-z])" + re.escape(e) + r"(?![A-Za-z])")) for e in english]
        for c in checked:
            text = c["text"] if c["region"] != "lang_switch" else _strip_endonyms(c["text"], "zh")
            hits = [e for e, p in pats if p.search(text)]
            if hits:
                found.append(f"{c['region']}: {text[:80]!r} has {hits[:3]}")
    return sorted(set(found))


def bot_texts(page: Any) -> list[str]:
    """The tutor's messages in the chat, in order, without the thinking blocks (innerText, math kept)."""
    return page.evaluate("""(s) => [...document.querySelectorAll(s.bot)].map(e => {
        const c = e.cloneNode(true); c.querySelectorAll(s.thinking).forEach(x => x.remove());
        c.querySelectorAll('.katex-html').forEach(x => x.remove());
        return c.innerText.trim(); }).filter(x => x)""", {"bot": SEL["bot_msg"], "thinking": SEL["thinking"]})


def bot_prose(page: Any) -> list[str]:
    """Like :func:`bot_texts` with typeset math removed: the words of each tutor message."""
    return page.evaluate("""(s) => [...document.querySelectorAll(s.bot)].map(e => {
        const c = e.cloneNode(true); c.querySelectorAll(s.thinking).forEach(x => x.remove());
        c.querySelectorAll(s.math).forEach(x => x.remove());
        return c.innerText.trim(); }).filter(x => x)""",
        {"bot": SEL["bot_msg"], "thinking": SEL["thinking"], "math": SEL["math"]})


_IN_VIEW_JS = """(el) => {
  let r = el.getBoundingClientRect();
  let top = Math.max(r.top, 0), bottom = Math.min(r.bottom, innerHeight);
  let left = Math.max(r.left, 0), right = Math.min(r.right, innerWidth);
  for (let p = el.parentElement; p; p = p.parentElement) {
    const s = getComputedStyle(p);
    if (/(hidden|auto|scroll|clip)/.test(s.overflowY + s.overflowX)) {
      const q = p.getBoundingClientRect();
      top = Math.max(top, q.top); bottom = Math.min(bottom, q.bottom);
      left = Math.max(left, q.left); right = Math.min(right, q.right);
    }
  }
  return {top: r.top, height: r.height, seen_h: Math.max(0, bottom - top), seen_w: Math.max(0, right - left),
          viewport_h: innerHeight, scroll_y: scrollY};
}"""


def in_view(page: Any, selector: str, index: int = 0) -> dict:
    """How much of the ``index``-th element of ``selector`` is on screen (clipped by the viewport and by
    every scrolling ancestor). ``ok``: at least 40 px of it (all of it when smaller) are seen."""
    loc = page.locator(selector)
    n = loc.count()
    if n == 0:
        return {"ok": False, "why": "absent"}
    el = loc.nth(index if index >= 0 else n + index)
    v = el.evaluate(_IN_VIEW_JS)
    v["ok"] = v["seen_w"] > 0 and v["seen_h"] >= min(40.0, v["height"] - 1)
    return v


def wait_in_view(page: Any, selector: str, index: int = 0, grace_s: float = 2.0) -> tuple[dict, float | None]:
    """Poll :func:`in_view` for ``grace_s`` (a page may scroll smoothly); (last view, time it took or None)."""
    t0 = time.perf_counter()
    while True:
        v = in_view(page, selector, index)
        if v["ok"]:
            return v, time.perf_counter() - t0
        if time.perf_counter() - t0 > grace_s:
            return v, None
        page.wait_for_timeout(50)


def wait_stable(page: Any, selector: str, quiet_ms: int = 700, timeout_s: float = 60) -> str:
    """Wait until the innerText of ``selector`` has not changed for ``quiet_ms``; return it."""
    t0, last, since = time.perf_counter(), None, time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        cur = page.evaluate("(s) => document.querySelector(s)?.innerText ?? ''", selector)
        if cur != last:
            last, since = cur, time.perf_counter()
        elif (time.perf_counter() - since) * 1000 >= quiet_ms:
            return cur
        page.wait_for_timeout(100)
    return last or ""


def shot(page: Any, out_dir: Path, name: str, full: bool = False) -> str:
    """A screenshot of what the student sees now (the viewport; ``full``: the whole page)."""
    path = out_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    return path.name


def open_history(page: Any) -> None:
    """Open the "My problems" panel (a no-op when it is open)."""
    if not page.locator(SEL["history_list"]).is_visible():
        page.locator(SEL["history_toggle"]).first.click()
        page.wait_for_timeout(400)


_ITEMS_JS = """(s) => [...document.querySelectorAll(s.item)].map(card => {
  const clip = (el) => { let r = el.getBoundingClientRect();
    let [t, b, l, rt] = [r.top, r.bottom, r.left, r.right];
    for (let p = el.parentElement; p; p = p.parentElement) {
      const st = getComputedStyle(p);
      if (/(hidden|auto|scroll|clip)/.test(st.overflowY + st.overflowX)) { const q = p.getBoundingClientRect();
        t = Math.max(t, q.top); b = Math.min(b, q.bottom); l = Math.max(l, q.left); rt = Math.min(rt, q.right); } }
    return {top: t, bottom: b, left: l, right: rt, w: Math.max(0, rt - l), h: Math.max(0, b - t)}; };
  const img = card.querySelector('img'), cap = card.querySelector(s.caption);
  const c = clip(card);
  const cr = cap ? cap.getBoundingClientRect() : null;
  return {card: c, img: img ? clip(img) : null, img_natural: img ? [img.naturalWidth, img.naturalHeight] : null,
          caption: cap ? cap.innerText.trim() : null,
          caption_box: cr ? {top: cr.top, bottom: cr.bottom, left: cr.left, right: cr.right} : null,
          caption_font_px: cap ? parseFloat(getComputedStyle(cap).fontSize) : null,
          caption_clipped: cap ? (cap.scrollWidth > cap.clientWidth + 1 || cap.scrollHeight > cap.clientHeight + 1) : null};
})"""


def history_items(page: Any) -> list[dict]:
    """Each history card: its visible box, its picture's visible box and natural size, its caption and
    whether the caption is wholly inside the visible card and not cut (``caption_inside``)."""
    items = page.evaluate(_ITEMS_JS, {"item": SEL["history_item"], "caption": SEL["history_caption"]})
    for it in items:
        cb, c = it["caption_box"], it["card"]
        it["caption_inside"] = bool(cb) and not it["caption_clipped"] and (
            cb["top"] >= c["top"] - 1 and cb["bottom"] <= c["bottom"] + 1 and cb["left"] >= c["left"] - 1
            and cb["right"] <= c["right"] + 1 and c["h"] > 0)
    return items


def ink_share(png: bytes) -> float:
    """Share of pixels in a screenshot clearly darker than the paper (0: a blank box)."""
    import io

    from PIL import Image, ImageOps

    im = ImageOps.grayscale(Image.open(io.BytesIO(png)))
    hist = im.histogram()
    total = sum(hist) or 1
    # the paper's brightness: the most common level; ink is 60 levels darker than that
    paper = max(range(256), key=lambda i: hist[i])
    return sum(hist[: max(0, paper - 60)]) / total


def verdict_of(text: str, lang: str) -> dict:
    """Read a check reply: what its first line (the verdict) says (negative / positive / unsure) and whether the
    whole reply carries a confidence statement."""
    lead = text.strip().split("\n", 1)[0]  # the verdict line: what follows may discuss other answers
    v = VERDICT[lang]
    return {"lead": lead[:200], "negative": bool(re.search(v["negative"], lead, re.I)),
            "positive": bool(re.search(v["positive"], re.sub(v["negative"], "", lead, flags=re.I), re.I)),
            "unsure": bool(re.search(v["unsure"], text, re.I)),
            "confidence": bool(re.search(CONFIDENCE[lang], text, re.I))}


def labels_wrapped_per_char(page: Any) -> list[str]:
    """Block labels a narrow column broke into one or two characters per line (more than 3 lines)."""
    return page.evaluate("""(s) => [...document.querySelectorAll(s + ', label > span, [data-testid=block-info]')].filter(e => {
        const r = e.getBoundingClientRect(); if (r.width < 2 || r.height < 2) return false;
        const lh = parseFloat(getComputedStyle(e).lineHeight) || parseFloat(getComputedStyle(e).fontSize) * 1.3;
        return e.innerText.trim().length >= 3 && r.height > 3.2 * lh; }).map(e => e.innerText.trim())""",
        SEL["block_label"])


def covers(page: Any, a: str, b: str) -> list[str]:
    """The elements of ``b`` that the first visible element of ``a`` covers on screen (by more than
    2 px), each clipped to what its scrolling boxes show (a message scrolled under a floating label)."""
    return page.evaluate("""([a, b]) => {
      const x = [...document.querySelectorAll(a)].find(e => e.getBoundingClientRect().height > 1);
      if (!x) return [];
      const p = x.getBoundingClientRect();
      const clip = (el) => { const r = el.getBoundingClientRect(); let [t, bt, l, rt] = [r.top, r.bottom, r.left, r.right];
        for (let q = el.parentElement; q && !q.contains(x); q = q.parentElement) {
          const st = getComputedStyle(q);
          if (/(hidden|auto|scroll|clip)/.test(st.overflowY + st.overflowX)) { const z = q.getBoundingClientRect();
            t = Math.max(t, z.top); bt = Math.min(bt, z.bottom); l = Math.max(l, z.left); rt = Math.min(rt, z.right); } }
        return {top: t, bottom: bt, left: l, right: rt}; };
      return [...document.querySelectorAll(b)].filter(y => { const q = clip(y);
        return Math.min(p.right, q.right) - Math.max(p.left, q.left) > 2 &&
               Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top) > 2; }).map(y => y.innerText.slice(0, 60)); }""",
        [a, b])


def icons_clipped(block: Any) -> list[str]:
    """Icons of a block (an upload area) cut off by the block's edge or hidden under its label."""
    return block.evaluate("""(b) => { const br = b.getBoundingClientRect();
        const lab = b.querySelector('[data-testid=block-label]'); const lr = lab && lab.getBoundingClientRect();
        const out = [];
        for (const svg of b.querySelectorAll('svg')) {
          if (lab && lab.contains(svg)) continue;
          const r = svg.getBoundingClientRect(); if (r.width < 2 || r.height < 2) continue;
          if (r.top < br.top - 1 || r.bottom > br.bottom + 1 || r.left < br.left - 1 || r.right > br.right + 1)
            out.push('outside the block');
          else if (lr && Math.min(r.right, lr.right) - Math.max(r.left, lr.left) > 2 &&
                   Math.min(r.bottom, lr.bottom) - Math.max(r.top, lr.top) > 2) out.push('under the label');
        }
        return out; }""")


def generic_names(page: Any) -> list[str]:
    """Controls whose accessible name is only the component's type ("Radio", "Textbox", ...)."""
    return page.evaluate("""() => { const generic = ['Radio', 'Textbox', 'Dropdown', 'Slider', 'Checkbox',
        'Image', 'Gallery', 'Chatbot', 'Button', 'Number', 'File'];
      const out = [];
      for (const el of document.querySelectorAll('[aria-label], fieldset, textarea, input')) {
        const r = el.getBoundingClientRect(); if (r.width < 1 && r.height < 1 && !el.closest('fieldset')) continue;
        let name = el.getAttribute('aria-label');
        if (!name && el.tagName === 'FIELDSET') name = el.querySelector('legend, [data-testid=block-info]')?.innerText;
        if (!name && (el.tagName === 'TEXTAREA' || el.tagName === 'INPUT')) {
          const id = el.id && document.querySelector(`label[for="${el.id}"]`);
          name = (id && id.innerText) || el.closest('label')?.querySelector('[data-testid=block-info]')?.innerText
                 || el.getAttribute('placeholder');
        }
        if (name && generic.includes(name.trim())) out.push(`${el.tagName.toLowerCase()}: ${name.trim()}`);
      }
      return [...new Set(out)]; }""")


def pressed_state(button: Any) -> dict:
    """What could show a button as selected: aria-pressed, its classes, its colours."""
    return button.evaluate("""(b) => { const s = getComputedStyle(b);
        return {pressed: b.getAttribute('aria-pressed'), cls: b.className, bg: s.backgroundColor,
                border: s.borderColor, color: s.color, outline: s.outlineStyle + s.boxShadow}; }""")


def export_text(html: str) -> str:
    """The visible text of an exported HTML page (no tags, scripts, styles or MathML annotations)."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.skip, self.out = 0, []

        def handle_starttag(self, tag, attrs):  # noqa: ANN001
            if tag in ("script", "style", "annotation", "head"):
                self.skip += 1

        def handle_endtag(self, tag):  # noqa: ANN001
            if tag in ("script", "style", "annotation", "head") and self.skip:
                self.skip -= 1

        def handle_data(self, data):  # noqa: ANN001
            if not self.skip:
                self.out.append(data)

    p = P()
    p.feed(html)
    return re.sub(r"\s+", " ", " ".join(p.out))


# What the intake says about a bad photo (tutor.intake's messages), by language.
INPUT_MESSAGES = {
    "not_an_image": {"en": "not an image", "zh": "不是图片"},
    "too_many_pixels": {"en": "too many pixels", "zh": "像素过多"},
}


def wait_text(page: Any, needle: str, timeout_s: float) -> float | None:
    """Seconds until ``needle`` is in the visible text of the page (a toast, a status line), or None."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if any(needle.lower() in c["text"].lower() for c in visible_texts(page)):
            return time.perf_counter() - t0
        page.wait_for_timeout(100)
    return None


def summary(walk_json: Path | str) -> str:
    """A Markdown table of a ``walk.json``: per issue point, the checks that failed in each walk, and
    the click-to-answer times (``python -m tests.walk_page /work/shots-before/walk.json``)."""
    import json

    data = json.loads(Path(walk_json).read_text(encoding="utf-8"))
    walks = sorted(data)
    points = sorted({c["point"] for w in data.values() for c in w["checks"]}, key=lambda p: (not p.isdigit(), p.zfill(3)))
    rows = ["| point | " + " | ".join(walks) + " |", "|---" * (len(walks) + 1) + "|"]
    for p in points:
        cells = []
        for k in walks:
            cs = [c for c in data[k]["checks"] if c["point"] == p]
            bad = sorted({c["check"] for c in cs if not c["ok"]})
            cells.append("—" if not cs else f"{len(cs) - sum(not c['ok'] for c in cs)}/{len(cs)} ok" +
                         ("".join(f"<br>✗ {b}" for b in bad)))
        rows.append(f"| {p} | " + " | ".join(cells) + " |")
    keys = sorted({t for w in data.values() for t in w["times"]})
    rows += ["", "| time (s) | " + " | ".join(walks) + " |", "|---" * (len(walks) + 1) + "|"]
    rows += [f"| {t} | " + " | ".join(str(data[k]["times"].get(t, "")) for k in walks) + " |" for t in keys]
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    print(summary(sys.argv[1] if len(sys.argv) > 1 else "walk.json"))
