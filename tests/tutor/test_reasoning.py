from tutor.reasoning import split_reasoning


def test_normal_output_without_opening_tag():
    r = split_reasoning("Let x = 2.\n</think>\n\nSo \\boxed{2}.")
    assert (r.thinking, r.answer, r.truncated, r.empty) == ("Let x = 2.", "So \\boxed{2}.", False, False)


def test_truncated_output_is_all_thinking_and_flagged():
    r = split_reasoning("First we compute the derivative, then")
    assert r.thinking == "First we compute the derivative, then"
    assert r.answer == "" and r.truncated and not r.empty


def test_stray_and_repeated_opening_tags_are_dropped():
    r = split_reasoning("<think>\n<think>reason</think>answer")
    assert (r.thinking, r.answer, r.truncated) == ("reason", "answer", False)
    r = split_reasoning("<think>still going")
    assert r.thinking == "still going" and r.truncated


def test_repeated_closing_tags_and_inner_think_blocks():
    r = split_reasoning("a</think>b<think>c</think>d</think>e")
    assert r.thinking == "a\n\nc"
    assert r.answer == "bde"
    assert "<think>" not in r.answer and "</think>" not in r.answer


def test_empty_and_whitespace_output():
    for text in ("", "   \n", None):
        r = split_reasoning(text)
        assert r.empty and r.truncated and r.thinking == "" and r.answer == ""


def test_answer_only_after_immediate_close():
    r = split_reasoning("</think>\\boxed{A}")
    assert (r.thinking, r.answer, r.truncated) == ("", "\\boxed{A}", False)
