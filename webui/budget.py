"""The page's thinking budget: its control, its starting value, and the value each browser session chose.

    from webui.budget import SessionBudgets, budget_slider
    slider = budget_slider(cfg, engine)           # gr.Slider 1..MAX_NEW_TOKENS, starting at the model's budget
    budgets = SessionBudgets()
    budgets.set(session, "2048", "en")            # "" when kept; the refusal (en/zh) for a bad value
    budgets.sampling(session, default)            # Sampling(max_new_tokens=2048), or ``default``

R1V2 thinks for up to 64,000 tokens (``engine.presets.R1V2_BUDGET``); a visitor can lower the budget
for a quick answer or raise it for a hard problem. The control's ``input`` event stores the value per
session (``set``); the mode handlers read it (``sampling``), so their API inputs stay as they were.
When a candidate hits the budget with no answer, ``webui.view.budget_note`` says so. Tests:
``tests/test_budget_page.py``.
"""

from __future__ import annotations

import threading
from typing import Any

from tutor.errors import InputError
from tutor.limits import MAX_NEW_TOKENS, cap_max_new_tokens, check_budget

MAX_SESSIONS = 10_000  # the oldest session's choice is forgotten past this


def default_budget(cfg: Any, engine: Any) -> int:
    """The control's starting value: ``--max-new-tokens`` (capped), else the loaded model's budget, else
    the preset's ``max_new_tokens`` (a served model or an unknown directory: ``engine.http``'s default)."""
    from engine.http import DEFAULT_MAX_TOKENS
    from engine.presets import PRESETS

    if getattr(cfg, "max_new_tokens", None):
        return int(cap_max_new_tokens(cfg.max_new_tokens))
    inner = getattr(engine, "_engine", None) or engine
    lm = getattr(inner, "lm", None)
    if getattr(lm, "budget", None):
        return min(int(lm.budget), MAX_NEW_TOKENS)
    target = getattr(engine, "target", None) or getattr(engine, "name", None)
    if getattr(engine, "kind", "local") == "local" and target in PRESETS:
        return PRESETS[target].max_new_tokens
    return DEFAULT_MAX_TOKENS


def budget_slider(cfg: Any, engine: Any):
    """The "Thinking budget" control: 1..MAX_NEW_TOKENS tokens per candidate, starting at
    :func:`default_budget`. Its value reaches ``set_budget`` unchecked by Gradio, whose own
    out-of-range error is English only; ``check_budget`` refuses it in the page's language."""
    from webui.components import BudgetSlider

    return BudgetSlider(1, MAX_NEW_TOKENS, value=default_budget(cfg, engine), step=1, min_width=160,
                        elem_id="r1v-budget")


class SessionBudgets:
    """The budget each browser session chose (thread-safe, at most ``MAX_SESSIONS`` kept)."""

    def __init__(self) -> None:
        self._by_session: dict[str, int] = {}
        self._lock = threading.Lock()

    def set(self, session: str, value: Any, lang: str) -> str:
        """Keep ``value`` for ``session``: "" when kept, else the refusal in ``lang`` (nothing kept)."""
        try:
            budget = check_budget(value)
        except InputError as e:
            return e.message(lang)
        with self._lock:
            if len(self._by_session) >= MAX_SESSIONS and session not in self._by_session:
                self._by_session.pop(next(iter(self._by_session)))
            self._by_session[session] = budget
        return ""

    def sampling(self, session: str, default: Any, value: Any = None) -> Any:
        """``Sampling`` with the session's budget (or ``value``, checked, when given); ``default`` when
        the session chose none."""
        budget = value if value not in (None, "") else self._by_session.get(session)
        if budget is None:
            return default
        from engine.core import Sampling

        return Sampling(max_new_tokens=check_budget(budget))
