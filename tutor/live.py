"""A model run while it streams: stoppable by its problem, its text saved as it grows, its size capped.

    runs = Runs(store)
    with runs.start("u1", pid, attempt_id, stop, lang="en", save=True) as live:
        for ev in engine.stream(..., stop=live.stop):
            live.add(ev)        # counts; saves the reply so far every SAVE_EVERY_S; stops past MAX_REPLY_CHARS
    live.drop()                 # the run finished: the mode saves the final reply instead
    runs.cancel("u1", pid)      # Delete: every run on that problem stops at its next token

Used by ``tutor.session.Tutor._run``. The growing reply is one assistant message on the attempt,
rewritten every ``SAVE_EVERY_S`` seconds, so a process killed mid-answer (SIGKILL, power loss) leaves
the text it had streamed: the attempt reopens as "interrupted" with that text instead of nothing.
``MAX_REPLY_CHARS`` bounds what one run may produce (all candidates together): past it the engine is
told to stop, and each candidate is cut with a note (the store also cuts any one text,
``tutor.store_checks.MAX_STORED_CHARS``). Saving is best effort: a store failure is logged and never
hides the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tutor.errors import InputError, TutorError

log = logging.getLogger(__name__)

SAVE_EVERY_S = 2.0
MAX_REPLY_CHARS = 200_000


def cut_note(lang: str) -> str:
    if lang.startswith("zh"):
        return f"\n\n[…回答超过 {MAX_REPLY_CHARS} 个字符，已截断]"
    return f"\n\n[…the reply was longer than {MAX_REPLY_CHARS} characters and was cut]"


def deleted_error() -> InputError:
    return InputError("deleted_while_running", "This problem was deleted, so its answer was stopped.",
                      "这道题已被删除，回答已停止。")


def shown_text(raw: str) -> str:
    """What a reader sees of a raw candidate so far: the answer part once ``</think>`` came, else the thinking."""
    head, sep, tail = raw.partition("</think>")
    return (tail if sep and tail.strip() else head).strip()


class LiveRun:
    """One streaming run (see the module docstring)."""

    def __init__(self, store: Any, user: str, problem_id: int, attempt: int, stop: threading.Event, lang: str,
                 save: bool):
        self.store, self.user, self.problem_id, self.attempt = store, user, problem_id, attempt
        self.stop, self.lang, self.save = stop, lang, save
        self.text = ""  # candidate 0 so far
        self.chars = 0  # every candidate
        self.capped = self.cancelled = False
        self.message_id: int | None = None
        self._saved_at, self._saved_len = time.monotonic(), 0

    def add(self, ev: Any) -> None:
        piece = getattr(ev, "text", "") or ""
        self.chars += len(piece)
        if getattr(ev, "index", 0) == 0 and len(self.text) <= MAX_REPLY_CHARS:
            self.text += piece
        if self.chars > MAX_REPLY_CHARS and not self.capped:
            log.warning("attempt %s: reply over %d characters, stopped", self.attempt, MAX_REPLY_CHARS)
            self.capped = True
            self.stop.set()
        if self.save and time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save_now()

    def save_now(self) -> None:
        """Write the reply so far as the attempt's assistant message (best effort)."""
        text = shown_text(self.text)
        self._saved_at = time.monotonic()
        if not text or len(self.text) == self._saved_len or self.cancelled:
            return
        try:
            if self.message_id is None:
                self.message_id = self.store.add_message(self.user, self.problem_id, "assistant", text,
                                                         attempt_id=self.attempt)
            else:
                self.store.set_message(self.user, self.message_id, text)
            self._saved_len = len(self.text)
        except TutorError as e:
            log.warning("attempt %s: could not save the reply so far: %s", self.attempt, e)

    def drop(self) -> None:
        """Remove the growing message (the final reply, or the partial candidates, are saved instead)."""
        if self.message_id is None:
            return
        try:
            self.store.set_message(self.user, self.message_id, None)
        except TutorError as e:
            log.warning("attempt %s: could not remove the reply so far: %s", self.attempt, e)
        self.message_id = None

    def cap(self, candidates: Any) -> None:
        """Cut each candidate of a capped run to ``MAX_REPLY_CHARS``, with a note."""
        if not self.capped:
            return
        for c in candidates:
            for name in ("thinking", "text"):
                value = getattr(c, name, "") or ""
                if len(value) > MAX_REPLY_CHARS:
                    setattr(c, name, value[:MAX_REPLY_CHARS] + cut_note(self.lang))


class Runs:
    """The runs streaming now, by (user, problem), so that deleting a problem stops its runs."""

    def __init__(self, store: Any):
        self.store = store
        self._live: dict[tuple[str, int], set[LiveRun]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def start(self, user: str, problem_id: int, attempt: int, stop: threading.Event | None, *, lang: str = "en",
              save: bool = True) -> Iterator[LiveRun]:
        live = LiveRun(self.store, user, problem_id, attempt, stop or threading.Event(), lang, save)
        key = (user, problem_id)
        with self._lock:
            self._live.setdefault(key, set()).add(live)
        try:
            yield live
        finally:
            with self._lock:
                self._live.get(key, set()).discard(live)
                if not self._live.get(key):
                    self._live.pop(key, None)

    def cancel(self, user: str, problem_id: int) -> int:
        """Stop every run on this problem (they end at their next token); how many there were."""
        with self._lock:
            runs = list(self._live.get((user, problem_id), ()))
        for live in runs:
            live.cancelled = True
            live.stop.set()
        return len(runs)
