"""Split a reasoning model's output into thinking and answer.

R1V2's assistant turn is pre-filled with ``<think>\\n``, so the generated text holds only the
reasoning, then ``</think>``, then the answer; the opening tag never appears (FACTS.md). This module
never requires it:

    >>> r = split_reasoning("Let x = 2.\\n</think>\\nThe answer is \\\\boxed{2}.")
    >>> r.thinking, r.answer, r.truncated
    ('Let x = 2.', 'The answer is \\\\boxed{2}.', False)

Edge cases, each a test in tests/tutor/test_reasoning.py:
- no ``</think>`` at all: the output was cut off while thinking; everything is thinking, the answer
  is empty, ``truncated`` is True;
- a stray opening ``<think>`` (servers that do not pre-fill, or a model that repeats it) is dropped;
- several ``</think>``: thinking ends at the first; a later ``<think>...</think>`` block inside the
  answer is more thinking (moved there), and unmatched stray tags in the answer are removed;
- empty or whitespace-only output: both parts empty, ``empty`` and ``truncated`` True.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"
_BLOCK = re.compile(r"<think>(.*?)</think>", re.S)


@dataclass(frozen=True)
class Reasoning:
    thinking: str
    answer: str
    truncated: bool  # no closing </think>: the model never reached its answer
    empty: bool = False


def split_reasoning(text: str | None) -> Reasoning:
    """Split generated text (after the pre-filled ``<think>``) into thinking and answer."""
    text = text or ""
    if not text.strip():
        return Reasoning("", "", truncated=True, empty=True)
    body = text.lstrip()
    while body.startswith(OPEN):  # stray opening tag(s)
        body = body[len(OPEN):].lstrip()
    head, sep, tail = body.partition(CLOSE)
    if not sep:
        return Reasoning(head.replace(OPEN, "").strip(), "", truncated=True)
    thinking = [head.replace(OPEN, "").strip()]
    # Later <think>...</think> blocks in the answer are more reasoning.
    thinking += [m.strip() for m in _BLOCK.findall(tail) if m.strip()]
    answer = _BLOCK.sub("", tail).replace(OPEN, "").replace(CLOSE, "")
    return Reasoning("\n\n".join(t for t in thinking if t), answer.strip(), truncated=False)
