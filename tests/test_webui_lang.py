"""The page-language helpers without a browser: retranslating what is shown, the examples table's rows,
and the head script the locale middleware puts into the page (tests/test_browser_lang.py runs them live)."""

from __future__ import annotations

import asyncio

from webui import locale
from webui.example_table import describe, headers, picked, rows
from webui.i18n import STRINGS, t
from webui.relang import relang_answer, relang_chat, retranslate


def test_retranslate_every_string_with_its_fields() -> None:
    assert retranslate("Done in 3.2 s.", "zh") == "完成，用时 3.2 秒。"
    assert retranslate("完成，用时 3.2 秒。", "en") == "Done in 3.2 s."
    assert retranslate("⚠️ " + t("no_problem", "en"), "zh") == "⚠️ " + t("no_problem", "zh")
    assert retranslate("a reply of the model", "zh") is None and retranslate("", "en") == ""
    assert retranslate("Done in 1.2 s. Not correct.", "zh") == "完成，用时 1.2 秒。不正确。"  # status + verdict
    assert retranslate("完成，用时 1.2 秒。不确定：请逐步检查。", "en") == "Done in 1.2 s. Not sure: check it step by step."
    for key, (en, _zh) in STRINGS.items():
        if "{" not in en:
            same = {z for e, z in STRINGS.values() if e == en}  # one English text may be two keys' ("Candidate solutions")
            assert retranslate(en, "zh") in same, key


def test_answer_panel_and_chat_chips_follow_the_page_language() -> None:
    md = f"**{t('asked', 'en')}:** x<y\n\n**{t('final', 'en')}:** {t('no_final', 'en')}"
    assert relang_answer(md, "zh") == f"**{t('asked', 'zh')}:** x<y\n\n**{t('final', 'zh')}:** {t('no_final', 'zh')}"
    chat = [{"role": "user", "content": [{"type": "text", "text": f"{t('my_answer', 'zh')}: x=2"}]},
            {"role": "user", "content": t("hint", "zh")},
            {"role": "assistant", "content": "答案是 2", "metadata": {"title": t("thinking", "zh")}},
            {"role": "user", "content": [{"type": "file", "file": {"path": "/x.png"}}]}]
    out = relang_chat(chat, "en")
    assert out[0]["content"][0]["text"] == "My answer: x=2" and out[1]["content"] == t("hint", "en")
    assert out[2]["metadata"]["title"] == t("thinking", "en") and out[2]["content"] == "答案是 2"  # the reply stays
    assert chat[1]["content"] == t("hint", "zh")  # the input is not changed


def test_example_rows_are_in_the_page_language_and_a_click_sets_values_only() -> None:
    from tutor.examples import load_examples

    examples = load_examples()
    en, zh = rows(examples, "en"), rows(examples, "zh")
    assert len(en[0]) == 2 and headers("zh") == ["照片", "题目"]
    assert describe(examples[0], "en") == "Math · Single choice · in Chinese"
    assert describe(examples[0], "zh") == "数学 · 单选题 · 中文题"
    assert all("math" not in r[1] and "single_choice" not in r[1] for r in en + zh)
    photo, subject, ptype = picked(examples, 0)
    assert photo == str(examples[0].image_path) and (subject, ptype) == ("math", "single_choice")


def test_the_middleware_puts_the_boot_script_first_in_pages_only() -> None:
    page = b"<!doctype html><html><head><title>x</title></head></html>"

    async def serve(path: str, body: bytes, ctype: bytes) -> bytes:
        sent: list[dict] = []

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        async def send(message):
            sent.append(message)

        await locale.LocaleScript(app)({"type": "http", "method": "GET", "path": path}, None, send)
        out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        length = dict(sent[0]["headers"])[b"content-length"]
        assert int(length) == len(out)
        return out

    out = asyncio.run(serve("/", page, b"text/html; charset=utf-8"))
    assert out.startswith(b"<!doctype html><html><head><script>") and b"r1v_locale" in out
    assert asyncio.run(serve("/gradio_api/file=/tmp/e.html", page, b"text/html")) == page  # an export stays as is
    assert asyncio.run(serve("/config", b"{}", b"application/json")) == b"{}"
