"""Every server-side limit in one place: named constants and the per-visitor rate limiter.

    from tutor.limits import LIMITS, RateLimiter, check_n, cap_max_new_tokens
    check_n(4)                                  # -> 4; InputError "bad_n" outside 1..MAX_N
    cap_max_new_tokens(10**6)                   # -> MAX_NEW_TOKENS
    check_budget("2048")                        # -> 2048; InputError "bad_budget" outside 1..MAX_NEW_TOKENS
    limiter = RateLimiter(per_minute=REQUESTS_PER_MINUTE)
    limiter.hit("visitor-id")                   # InputError "rate_limited" past the limit

The constants are the ones the code enforces, imported from where they are enforced (intake,
prompts, engine) rather than copied, so this table cannot drift from the behaviour:

==========================  ==========================================  =====================
limit                       constant                                    enforced in
==========================  ==========================================  =====================
upload size (per image)     ``MAX_UPLOAD_BYTES`` (20 MiB)               Gradio ``max_file_size``
                                                                        and ``tutor.intake``
pixels before decoding      ``MAX_PIXELS`` (40 MP)                      ``tutor.intake``
images per question         ``MAX_IMAGES_PER_QUESTION`` (4)             ``tutor.intake.load_images``
question length             ``MAX_QUESTION_CHARS`` (4000 characters)    ``tutor.prompts``
answer / follow-up length   ``MAX_ANSWER_CHARS`` (4000 characters)      ``tutor.prompts``
candidates n                ``MAX_N`` (16)                              ``check_n``, engines
max new tokens              ``MAX_NEW_TOKENS`` (64000 per candidate)    ``cap_max_new_tokens``,
                                                                        ``check_budget`` (page)
model requests per visitor  ``REQUESTS_PER_MINUTE`` (20 per minute)     ``RateLimiter`` (app)
==========================  ==========================================  =====================

The limits live here, in the lowest layer: ``engine`` imports ``MAX_N`` and ``MAX_NEW_TOKENS`` from
this module (never the other way round), so ``tutor`` imports nothing of ``engine``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tutor.errors import InputError
from tutor.intake import DEFAULT_LIMITS
from tutor.intake import MAX_IMAGES as MAX_IMAGES_PER_QUESTION
from tutor.prompts import MAX_ANSWER_CHARS, MAX_QUESTION_CHARS

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES: int = DEFAULT_LIMITS.max_bytes
MAX_PIXELS: int = DEFAULT_LIMITS.max_pixels
MAX_N: int = 16  # candidates per question (the page's slider stops at 8)
# R1V2's thinking budget: Skywork's transformers script lets it write 64,000 new tokens and the R1V2
# report evaluates at 64K (engine.presets.R1V2_BUDGET is this number)
MAX_NEW_TOKENS: int = 64_000
REQUESTS_PER_MINUTE: int = 20

__all__ = [
    "LIMITS",
    "MAX_ANSWER_CHARS",
    "MAX_IMAGES_PER_QUESTION",
    "MAX_N",
    "MAX_NEW_TOKENS",
    "MAX_PIXELS",
    "MAX_QUESTION_CHARS",
    "MAX_UPLOAD_BYTES",
    "REQUESTS_PER_MINUTE",
    "RateLimiter",
    "cap_max_new_tokens",
    "check_budget",
    "check_length",
    "check_n",
]

#: name -> value, for the limits table in docs/USAGE.md and the tests.
LIMITS: dict[str, int] = {
    "MAX_UPLOAD_BYTES": MAX_UPLOAD_BYTES,
    "MAX_PIXELS": MAX_PIXELS,
    "MAX_IMAGES_PER_QUESTION": MAX_IMAGES_PER_QUESTION,
    "MAX_QUESTION_CHARS": MAX_QUESTION_CHARS,
    "MAX_ANSWER_CHARS": MAX_ANSWER_CHARS,
    "MAX_N": MAX_N,
    "MAX_NEW_TOKENS": MAX_NEW_TOKENS,
    "REQUESTS_PER_MINUTE": REQUESTS_PER_MINUTE,
}


def check_n(n: Any) -> int:
    """The number of candidates as an int in 1..MAX_N; anything else is an ``InputError`` ("bad_n")."""
    value = _whole_in(n, 1, MAX_N)
    if value is None:
        raise InputError("bad_n", f"The number of candidates must be a whole number from 1 to {MAX_N}.",
                         f"候选解答的数量必须是 1 到 {MAX_N} 之间的整数。", f"n={n!r:.40}")
    return value


def _whole_in(value: Any, lo: int, hi: int) -> int | None:
    """``value`` as an int when it is a whole number in lo..hi (``3.0`` is, ``3.5``, ``"x"``, ``nan`` are not)."""
    try:
        number = float(value)
        whole = int(number)
    except (TypeError, ValueError, OverflowError):
        return None
    return whole if number == whole and lo <= whole <= hi else None


def check_length(text: str, limit: int, what_en: str, what_zh: str) -> str:
    """``text`` unchanged when it has at most ``limit`` characters, else ``InputError("text_too_long")``."""
    text = "" if text is None else str(text)
    if len(text) > limit:
        raise InputError("text_too_long", f"The {what_en} is too long ({len(text)} characters; the limit is {limit}).",
                         f"{what_zh}太长了（{len(text)} 个字符，上限 {limit}）。", f"{what_en}: {len(text)} chars")
    return text


def cap_max_new_tokens(value: int | None) -> int | None:
    """``value`` capped at ``MAX_NEW_TOKENS`` (None stays None: the preset's default, itself <= the cap)."""
    if value is None:
        return None
    if value > MAX_NEW_TOKENS:
        log.warning("max_new_tokens %d is over the limit; using %d", value, MAX_NEW_TOKENS)
    return max(1, min(int(value), MAX_NEW_TOKENS))


def check_budget(value: Any) -> int:
    """The page's thinking budget as an int in 1..MAX_NEW_TOKENS; anything else is an ``InputError``
    ("bad_budget") saying the range."""
    budget = _whole_in(value, 1, MAX_NEW_TOKENS)
    if budget is None:
        raise InputError("bad_budget", f"The thinking budget must be a whole number of tokens from 1 to {MAX_NEW_TOKENS}.",
                         f"思考预算必须是 1 到 {MAX_NEW_TOKENS} 之间的整数（词元数）。", f"budget={value!r:.40}")
    return budget


@dataclass
class RateLimiter:
    """At most ``per_minute`` hits per key in any sliding 60-second window; thread-safe.

    ``hit(key)`` records a request or raises ``InputError("rate_limited")`` (the refused request is
    not counted, so a visitor who waits gets served again). Keys idle for a minute are forgotten.
    """

    per_minute: int = REQUESTS_PER_MINUTE
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _hits: dict[str, deque] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def hit(self, key: str) -> None:
        now = self.clock()
        with self._lock:
            q = self._hits.setdefault(key, deque())
            while q and now - q[0] >= self.window_s:
                q.popleft()
            if len(q) >= self.per_minute:
                wait = max(1, int(self.window_s - (now - q[0]) + 0.999))
                raise InputError(
                    "rate_limited",
                    f"Too many requests: at most {self.per_minute} per minute. Please wait {wait} s and try again.",
                    f"请求太频繁：每分钟最多 {self.per_minute} 次。请等待 {wait} 秒后再试。",
                    f"key={key[:40]!r}",
                )
            q.append(now)
            if len(self._hits) > 10_000:  # forget idle visitors
                for k in [k for k, v in self._hits.items() if not v or now - v[-1] >= self.window_s]:
                    del self._hits[k]

    def remaining(self, key: str) -> int:
        now = self.clock()
        with self._lock:
            q = self._hits.get(key, deque())
            return self.per_minute - sum(1 for t in q if now - t < self.window_s)
