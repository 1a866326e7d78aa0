"""The page's table of example problems, in the page's language.

    from webui.example_table import example_table, table_update, picked
    table = example_table(app.examples, "zh")                   # a gr.Dataset: photo | what it is
    table.click(lambda i: picked(app.examples, i), table, [editor, subject, ptype])
    table_update(app.examples, "en")                            # for the language switch

Not ``gr.Examples``: its click sends each input component the config it had when the examples were
built (``Examples.input_component_props``, captured once), so clicking an example put back the first
render's Chinese labels and choices on the photo, subject, type and reply boxes of an English page.
Here a click sets only the values. The table has two columns (the photo, and its subject, type and
the language it is written in, named in the page's language), so it fits a 1280 px desktop column and
a phone. A click leaves the reply language alone: it is the student's choice (the page's language
unless they changed it), not the example's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from webui.i18n import CHOICES, t

PER_PAGE = 8
COMPONENTS = ["image", "textbox"]


def describe(example: Any, lang: str) -> str:
    """"Math · Single choice · in Chinese" for one example, in ``lang``."""
    parts = [t(example.subject, lang) if example.subject in CHOICES["subject"] else str(example.subject)]
    if example.problem_type in CHOICES["ptype"] and example.problem_type != "auto":
        parts.append(t(example.problem_type, lang))
    if example.lang in CHOICES["lang"]:
        parts.append(t(f"ex_lang_{example.lang}", lang))
    return " · ".join(parts)


def rows(examples: Sequence[Any], lang: str) -> list[list[str]]:
    return [[str(e.image_path), describe(e, lang)] for e in examples]


def headers(lang: str) -> list[str]:
    return [t("ex_photo", lang), t("ex_about", lang)]


def example_table(examples: Sequence[Any], lang: str = "zh") -> gr.Dataset:
    """The clickable table (``type="index"``: a click passes the example's position)."""
    return gr.Dataset(components=COMPONENTS, samples=rows(examples, lang), headers=headers(lang), type="index",
                      label=t("examples", lang), samples_per_page=PER_PAGE, elem_id="r1v-examples",
                      visible=bool(examples))


def table_update(examples: Sequence[Any], lang: str) -> dict:
    """The table's rows, headers and label in ``lang``."""
    return gr.update(samples=rows(examples, lang), headers=headers(lang), label=t("examples", lang))


def picked(examples: Sequence[Any], index: Any) -> tuple[Any, Any, Any]:
    """(photo, subject, problem type) of the clicked example; values only, so the labels stay as they are."""
    try:
        e = examples[int(index)]
    except (TypeError, ValueError, IndexError):
        return gr.skip(), gr.skip(), gr.skip()
    ptype = e.problem_type if e.problem_type in CHOICES["ptype"] else "auto"
    return str(e.image_path), e.subject, ptype
