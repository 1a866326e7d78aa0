"""Prompts for every tutoring mode, as OpenAI-chat-style messages.

The app, the engine and training all build prompts here, so the model sees the very same words at
training and at serving time. The wording lives in text files under ``assets/prompts/``: one template
per mode and reply language (``solve.zh.txt``, ``hint.en.txt`` ...; ``string.Template`` fields such
as ``$question``) and one ``parts.<lang>.json`` per language with the pieces the templates share
(subject names, per-type answer-format rules, the hint ladder, ...).

    from tutor.prompts import build_messages, render_text_prompt

    msgs = build_messages("solve", question="求 f(x)=x^2 的最小值", subject="math", lang="zh")
    # [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]}]
    print(render_text_prompt(msgs))   # ChatML text, one "<image>\\n" per image part

Message format: ``{"role": "user" | "assistant", "content": str | list[part]}``; a part is
``{"type": "image"}`` (a placeholder: the engine fills in the pixels, in order) or
``{"type": "text", "text": ...}``. Image parts come before the text in the first user turn, which
is how R1V2 wants them (``<image>\\n`` per image, then the question). There is no system message:
R1V2's format has none, so every instruction goes in the user turn.

The reply language is always asked for explicitly (the model otherwise tends to reason in English on
Chinese questions). Final answers are asked for in ``\\boxed{}`` with rules per problem type:
single choice -> one letter; multiple choice -> the letters in one box (``\\boxed{AB}``); fill in the
blank -> one box per blank, in order; free response -> one box per sub-question, in order. The check
mode asks for the verdict as ``\\boxed{correct}`` or ``\\boxed{incorrect}`` (see ``CHECK_VERDICTS``);
the practice mode asks for a new problem and its solution under the headers in ``practice_markers``.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from tutor.errors import InputError

log = logging.getLogger(__name__)

SUBJECTS: tuple[str, ...] = ("math", "physics", "chemistry", "biology")
PROBLEM_TYPES: tuple[str, ...] = ("single_choice", "multiple_choice", "fill_blank", "free_response", "auto")
MODES: tuple[str, ...] = ("solve", "hint", "check", "followup", "practice")
LANGS: tuple[str, ...] = ("zh", "en")
CHECK_VERDICTS: tuple[str, ...] = ("correct", "incorrect")

PROMPTS_DIR: Path = Path(__file__).resolve().parents[1] / "assets" / "prompts"
MAX_QUESTION_CHARS = 4000
MAX_ANSWER_CHARS = 4000
MAX_IMAGES = 8
MAX_HISTORY_TURNS = 40
# Strings that mean something to the chat template or the image processor: a student who types
# them must not be able to add image slots or fake a turn boundary.
# Every ``<|word_word|>`` token (ChatML's, Qwen-VL's vision and pad tokens; not ``2<|x|>1``) and the
# image and thinking tags, removed until none is left: nesting (``<|im_<|im_start|>start|>``) rebuilds none.
_SPECIAL_TOKENS = re.compile(
    r"<image>|</?img>|<IMG_CONTEXT>|</?video>|<\|(?:endoftext|[A-Za-z]+(?:_[A-Za-z0-9]+){1,4})\|>|</?think>"
)


def _bad(code: str, en: str, zh: str, detail: str = "") -> InputError:
    return InputError(code, en, zh, detail)


@cache
def _template(mode: str, lang: str) -> Template:
    path = PROMPTS_DIR / f"{mode}.{lang}.txt"
    return Template(path.read_text(encoding="utf-8"))


@cache
def _parts(lang: str) -> dict[str, Any]:
    return json.loads((PROMPTS_DIR / f"parts.{lang}.json").read_text(encoding="utf-8"))


def practice_markers(lang: str = "zh") -> tuple[str, str]:
    """The (problem, solution) headers the practice mode asks the model to write, for parsing."""
    _check_choice(lang, LANGS, "lang", "reply language", "回复语言")
    m = _parts(lang)["markers"]
    return m["problem"], m["solution"]


def hint_ladder(lang: str = "zh") -> list[str]:
    """The steps of the hint ladder; level k asks for step k (levels past the end reuse the last)."""
    _check_choice(lang, LANGS, "lang", "reply language", "回复语言")
    return list(_parts(lang)["hint_ladder"])


def _check_choice(value: Any, allowed: tuple[str, ...], name: str, en: str, zh: str) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise _bad(
            f"bad_{name}",
            f"Unknown {en} {value!r}; choose one of: {', '.join(allowed)}.",
            f"未知的{zh} {value!r}，可选：{'、'.join(allowed)}。",
        )


def _check_count(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(
            f"bad_{name}",
            f"{name} must be a whole number from {low} to {high}, not {value!r}.",
            f"{name} 必须是 {low} 到 {high} 之间的整数，而不是 {value!r}。",
        )
    return value


def clean_text(text: str) -> str:
    """Strip the text and remove chat-template and image tokens a user may have typed, to a fixed point
    (``<|im_<|im_start|>start|>`` leaves nothing), and lone UTF-16 surrogates, which JSON allows but no
    server can encode."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    cleaned, n = _SPECIAL_TOKENS.subn("", text)
    while n:  # to a fixed point: each pass shortens the text, so this ends
        cleaned, n = _SPECIAL_TOKENS.subn("", cleaned)
    if cleaned != text:
        log.info("removed special tokens from user text")
    return cleaned.strip()


def _check_text(text: Any, what_en: str, what_zh: str, limit: int) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise _bad(
            "bad_text",
            f"The {what_en} must be text.",
            f"{what_zh}必须是文字。",
            f"got {type(text).__name__}",
        )
    text = clean_text(text)
    if len(text) > limit:
        raise _bad(
            "text_too_long",
            f"The {what_en} is too long ({len(text)} characters; the limit is {limit}). Please shorten it.",
            f"{what_zh}太长了（{len(text)} 个字符，上限 {limit}），请删减后再试。",
        )
    return text


def _validate_history(history: list[dict] | None) -> list[dict]:
    if history is None:
        return []
    if not isinstance(history, list):
        raise _bad(
            "bad_history", "The conversation history is malformed.", "对话历史的格式不正确。", "not a list"
        )
    if len(history) > MAX_HISTORY_TURNS:
        raise _bad(
            "history_too_long",
            f"The conversation is too long (over {MAX_HISTORY_TURNS} turns). Please start a new one.",
            f"对话太长了（超过 {MAX_HISTORY_TURNS} 轮），请开始新的对话。",
        )
    out: list[dict] = []
    for i, msg in enumerate(history):
        ok = isinstance(msg, dict) and msg.get("role") in ("user", "assistant")
        content = msg.get("content") if ok else None
        if ok and isinstance(content, list):
            ok = all(
                isinstance(p, dict)
                and (p.get("type") == "image" or (p.get("type") == "text" and isinstance(p.get("text"), str)))
                for p in content
            )
        elif ok:
            ok = isinstance(content, str)
        expected = "user" if i % 2 == 0 else "assistant"
        if not ok or msg["role"] != expected:
            raise _bad(
                "bad_history",
                "The conversation history is malformed.",
                "对话历史的格式不正确。",
                f"turn {i}: expected role {expected} with str or parts content, got {msg!r:.200}",
            )
        msg = copy.deepcopy({"role": msg["role"], "content": content})
        if msg["role"] == "user":
            if isinstance(msg["content"], str):
                msg["content"] = clean_text(msg["content"])
            else:
                for p in msg["content"]:
                    if p["type"] == "text":
                        p["text"] = clean_text(p["text"])
        out.append(msg)
    if out and out[-1]["role"] != "assistant":
        raise _bad(
            "bad_history",
            "The conversation history is malformed.",
            "对话历史的格式不正确。",
            "history must end with an assistant turn",
        )
    return out


def _count_images(messages: list[dict]) -> int:
    return sum(
        1
        for m in messages
        if isinstance(m["content"], list)
        for p in m["content"]
        if p.get("type") == "image"
    )


def _fill(template: str, **fields: Any) -> str:
    return Template(template).substitute(**fields)


def _image_note(parts: dict[str, Any], n_images: int, has_text: bool) -> str:
    if n_images == 0:
        return ""
    key = ("images" if n_images > 1 else "image") + ("_and_text" if has_text else "_only")
    return _fill(parts["image_note"][key], n=n_images)


def _fields(
    mode: str,
    parts: dict[str, Any],
    question: str,
    subject: str,
    problem_type: str,
    n_images: int,
    hint_level: int,
    student_answer: str | None,
    reference: str | None,
    n_work_images: int,
) -> dict[str, Any]:
    """The template fields for the single-problem modes (solve, hint, check, practice)."""
    fields: dict[str, Any] = {
        "intro": _fill(parts["intro"], subject=parts["subjects"][subject]),
        "image_note": _image_note(parts, n_images, bool(question)),
        "question": question or parts["question_in_image"],
        "format_rules": parts["format_rules"][problem_type],
        "language_rule": parts["language_rule"],
    }
    if mode == "hint":
        ladder = parts["hint_ladder"]
        fields["hint_level"] = hint_level
        fields["ladder_step"] = ladder[min(hint_level, len(ladder)) - 1]
    elif mode == "check":
        answer = _check_text(student_answer, "answer", "答案", MAX_ANSWER_CHARS)
        ref = _check_text(reference, "reference solution", "参考解答", 4 * MAX_QUESTION_CHARS)
        if not answer and n_work_images == 0:
            raise _bad(
                "empty_answer",
                "Please type your answer or upload a photo of your work.",
                "请输入你的答案，或上传你的解答照片。",
            )
        fields["student_answer"] = answer or parts["student_answer_in_photo"]
        given = parts["reference_block"]["given"]
        fields["reference_block"] = (
            _fill(given, reference=ref) if ref else parts["reference_block"]["missing"]
        )
        work = ""
        if n_work_images:
            work = _fill(parts["work_note"]["many" if n_work_images > 1 else "one"], n=n_work_images)
        fields["image_note"] = " ".join(note for note in (fields["image_note"], work) if note)
    elif mode == "practice":
        fields["type_name"] = parts["type_names"][problem_type]
        fields["options_note"] = parts["options_note"][problem_type]
        fields["problem_marker"] = parts["markers"]["problem"]
        fields["solution_marker"] = parts["markers"]["solution"]
    return fields


def build_messages(
    mode: str,
    *,
    question: str = "",
    subject: str = "math",
    problem_type: str = "auto",
    lang: str = "zh",
    n_images: int = 1,
    history: list[dict] | None = None,
    hint_level: int = 1,
    student_answer: str | None = None,
    reference: str | None = None,
    n_work_images: int = 0,
) -> list[dict]:
    """Build the chat messages for one request in ``mode`` (see ``MODES``).

    ``question`` is the problem text typed by the student (may be empty when the problem is in the
    ``n_images`` photos); in ``followup`` mode it is the student's new message. ``history`` holds
    earlier turns (user, assistant, user, ...); they come first, unchanged apart from cleaning user
    text, and the new user turn is appended. Image placeholders go in the first user turn of the
    whole conversation, before its text, unless the history already carries them. ``check`` mode
    takes ``student_answer`` (required unless ``n_work_images`` photos of the student's work are
    given), an optional ``reference`` solution, and puts the work photos after the problem photos.
    ``hint_level`` starts at 1; levels past the end of the ladder reuse its last step.

    Raises ``InputError`` (message in Chinese and English) for an unknown mode, subject, type or
    language, an empty question with no images, or text over the length limits.
    """
    _check_choice(mode, MODES, "mode", "mode", "模式")
    _check_choice(subject, SUBJECTS, "subject", "subject", "学科")
    _check_choice(problem_type, PROBLEM_TYPES, "problem_type", "problem type", "题型")
    _check_choice(lang, LANGS, "lang", "reply language", "回复语言")
    n_images = _check_count(n_images, "n_images", 0, MAX_IMAGES)
    n_work_images = _check_count(n_work_images, "n_work_images", 0, MAX_IMAGES)
    hint_level = _check_count(hint_level, "hint_level", 1, 100)
    if n_work_images and mode != "check":
        raise _bad(
            "bad_n_work_images",
            "Photos of your own work can only be sent when checking an answer.",
            "只有在批改答案时才能上传自己的解答照片。",
        )
    question = _check_text(question, "question", "题目", MAX_QUESTION_CHARS)
    history_msgs = _validate_history(history)
    parts = _parts(lang)
    history_images = _count_images(history_msgs)

    if mode == "followup":
        if not question:
            raise _bad("empty_question", "Please type your follow-up question.", "请输入你的追问。")
        if not history_msgs:
            raise _bad(
                "no_history",
                "There is no earlier problem to follow up on. Please ask a new question first.",
                "还没有可以追问的题目，请先提一个新问题。",
            )
        text = _template(mode, lang).substitute(message=question, language_rule=parts["language_rule"])
    else:
        if not question and n_images == 0:
            raise _bad(
                "empty_question",
                "Please type the problem or upload a photo of it.",
                "请输入题目，或上传题目的照片。",
            )
        text = _template(mode, lang).substitute(
            **_fields(
                mode,
                parts,
                question,
                subject,
                problem_type,
                n_images,
                hint_level,
                student_answer,
                reference,
                n_work_images,
            )
        )

    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    turn: dict[str, Any] = {"role": "user", "content": [{"type": "text", "text": text}]}
    messages = history_msgs + [turn]
    # Problem photos belong in the first user turn of the conversation (unless already there);
    # photos of the student's work go in the new turn, after any problem photos.
    problem_images = 0 if history_images else n_images
    first = messages[0]
    if isinstance(first["content"], str):
        first["content"] = [{"type": "text", "text": first["content"]}]
    first["content"] = [{"type": "image"} for _ in range(problem_images)] + first["content"]
    if n_work_images:
        at = problem_images if first is turn else 0
        turn["content"][at:at] = [{"type": "image"} for _ in range(n_work_images)]
    return messages


def render_text_prompt(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """Render messages as ChatML text, each image part as ``<image>\\n`` (R1V2's prompt format).

    With ``add_generation_prompt`` and a last turn from the user, the assistant turn is opened and
    pre-filled with ``<think>\\n`` as R1V2 expects. Used by tests, and by training to check that
    both sides see the same prompt.
    """
    out: list[str] = []
    for msg in messages:
        content = msg["content"]
        if isinstance(content, str):
            body = content
        else:
            body = "".join("<image>\n" if p["type"] == "image" else p["text"] for p in content)
        out.append(f"<|im_start|>{msg['role']}\n{body}<|im_end|>\n")
    if add_generation_prompt and messages and messages[-1]["role"] == "user":
        out.append("<|im_start|>assistant\n<think>\n")
    return "".join(out)
