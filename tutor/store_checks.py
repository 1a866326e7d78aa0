"""The history store's error messages and the checks it makes on values from the page.

Each error is a ``StoreError`` with its English and Chinese message (``tutor.errors``); the value
helpers turn what a page or an API client sends (ids as strings, text with NUL characters or lone
surrogates, dicts or objects) into what the database accepts. Used by ``tutor.store.Store``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tutor.errors import StoreError

# --- errors -------------------------------------------------------------------------------------


def not_found(what: str, detail: str) -> StoreError:
    en, zh = {
        "problem": ("This problem was not found in your history.", "在你的历史记录中找不到这道题。"),
        "attempt": ("This answer was not found in your history.", "在你的历史记录中找不到这次解答。"),
    }[what]
    return StoreError("not_found", en, zh, detail)


def db_busy(detail: str) -> StoreError:
    return StoreError(
        "db_busy",
        "The history database is busy right now, so this was not saved. Please try again in a moment.",
        "历史数据库正忙，这次没有保存。请稍后再试。",
        detail,
    )


def bad_user(detail: str) -> StoreError:
    return StoreError(
        "bad_user",
        "Your session could not be identified. Please reload the page.",
        "无法识别你的会话，请刷新页面。",
        detail,
    )


def bad_value(field: str, value: object, allowed: Sequence[str]) -> StoreError:
    return StoreError(
        "bad_value",
        f"Could not save to history: '{field}' must be one of {', '.join(allowed)}.",
        f"无法保存到历史记录：'{field}' 必须是 {'、'.join(allowed)} 之一。",
        f"{field}={value!r}",
    )


def check_len(**fields: str | None) -> None:
    """Short labels must fit their column (PostgreSQL enforces the length, SQLite would not)."""
    limits = {"subject": 32, "problem_type": 32, "lang": 8, "model": 200, "backend": 50}
    for name, value in fields.items():
        if value is not None and len(value) > limits[name]:
            raise StoreError(
                "too_long",
                f"Could not save to history: '{name}' is longer than {limits[name]} characters.",
                f"无法保存到历史记录：'{name}' 超过 {limits[name]} 个字符。",
                f"{name}={value[:80]!r}",
            )


def db_error(e: Exception) -> StoreError:
    if "database is locked" in str(e) or "database is busy" in str(e):
        return db_busy(repr(e))
    return StoreError(
        "db_error",
        "History could not be read or saved right now. Please try again.",
        "暂时无法读取或保存历史记录，请稍后再试。",
        repr(e),
    )


# --- values from the page ----------------------------------------------------------------------


MAX_STORED_CHARS = 200_000  # one stored text (a reply, a candidate); a longer one is cut, and says so
CUT_NOTE = "\n\n[…cut: over {n} characters / 超过 {n} 个字符，已截断]"


def stored_text(value: Any) -> str:
    """Text as stored: NUL characters removed (PostgreSQL refuses them; SQLite would keep them), lone
    UTF-16 surrogates (possible in JSON from an API client) replaced, as neither database can encode them,
    and at most ``MAX_STORED_CHARS`` characters (a runaway model reply is not stored whole)."""
    if value is None:
        return ""
    text = str(value)
    if len(text) > MAX_STORED_CHARS:
        text = text[:MAX_STORED_CHARS] + CUT_NOTE.format(n=MAX_STORED_CHARS)
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def stored_opt_text(value: Any) -> str | None:
    return None if value is None else stored_text(value)


def as_id(value: Any, what: str) -> int:
    """An id from the page (possibly a string); anything that is not one is simply not found."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise not_found(what, f"{what} id {value!r:.40}") from None


def field_of(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)
