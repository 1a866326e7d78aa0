"""Errors meant for a student.

Every refusal the user can cause (a bad photo, an over-long question, an engine that is down) is a
``TutorError`` carrying a short message in Chinese and in English. The page shows ``message(lang)``;
the technical detail goes to the log via ``detail``. Nothing else is ever shown to the user.

    try:
        ...
    except TutorError as e:
        show(e.message("zh"))
"""

from __future__ import annotations


class TutorError(Exception):
    """A failure with a message for a student, in English and Chinese.

    ``code`` is a stable machine-readable name (``image_too_large``, ``engine_down`` ...) used by
    tests and the log; ``detail`` is for developers and never reaches the page.
    """

    def __init__(self, code: str, en: str, zh: str, detail: str = ""):
        super().__init__(f"{code}: {en}" + (f" ({detail})" if detail else ""))
        self.code = code
        self.en = en
        self.zh = zh
        self.detail = detail

    def message(self, lang: str = "en") -> str:
        """The message for the page, in ``lang`` ("zh" or "en"; anything else means English)."""
        return self.zh if str(lang).lower().startswith("zh") else self.en


class InputError(TutorError):
    """The user's input was refused (image, question text, answer, parameters)."""


class EngineError(TutorError):
    """The model could not answer (engine down, timeout, out of memory, stopped)."""


class StoreError(TutorError):
    """History could not be read or written."""
