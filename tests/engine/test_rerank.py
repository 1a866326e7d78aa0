"""engine.rerank: each strategy on hand-made candidate sets (ties included), and properties."""

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.rerank import STRATEGIES, check_strategy, group_answers, rerank
from tutor.errors import InputError


@dataclass
class C:
    index: int
    answer: str
    truncated: bool = False
    reward: float | None = None
    group: int | None = None


def cands(*answers, truncated=()):
    return [C(i, a, i in truncated) for i, a in enumerate(answers)]


def same(a, b):
    return a == b


# ---------------------------------------------------------------------------------------------- first


def test_first_is_the_first_sample_whatever_it_is():
    cs = cands("", "B", "B", truncated={0})
    r = rerank(cs, "first", scores=[0.0, 5.0, 5.0], equal=same)
    assert r.chosen == 0 and r.strategy == "first"
    assert "no reranking" in r.reason


# ----------------------------------------------------------------------------------------------- vote


def test_vote_picks_the_largest_group_and_its_first_member():
    r = rerank(cands("A", "B", "B"), "vote", equal=same)
    assert r.chosen == 1
    assert r.group_of == [1, 0, 0]
    assert [g.members for g in r.groups] == [[1, 2], [0]]
    assert "'B' is given by 2 of 3" in r.reason


def test_vote_tie_in_size_goes_to_the_group_that_appears_first():
    r = rerank(cands("A", "B", "B", "A"), "vote", equal=same)
    assert r.chosen == 0
    assert r.group_of == [0, 1, 1, 0]
    assert "tied" in r.reason


def test_vote_ignores_truncated_and_answerless_candidates():
    cs = cands("B", "", "A", "A", truncated={0})  # 0 has an answer string but never finished: ineligible
    r = rerank(cs, "vote", equal=same)
    assert r.chosen == 2
    assert r.group_of == [None, None, 0, 0]
    assert r.eligible == [False, False, True, True]


def test_vote_with_no_answers_takes_the_first_that_finished():
    r = rerank(cands("", "", truncated={0}), "vote", equal=same)
    assert r.chosen == 1 and r.groups == []
    assert "no candidate has a final answer" in r.reason


def test_vote_uses_tutor_answer_equivalence():
    r = rerank(cands("3", "0.5", "\\frac{1}{2}", "1/2"), "vote")
    assert r.chosen == 1
    assert r.group_of == [1, 0, 0, 0]


def test_groups_compare_with_the_first_member():
    groups = group_answers(cands("x", "y", "x"), [True, True, True], same)
    assert [g.members for g in groups] == [[0, 2], [1]]


# --------------------------------------------------------------------------------------------- reward


def test_reward_picks_the_highest_score_lowest_index_on_ties():
    r = rerank(cands("A", "B", "C", "D"), "reward", scores=[1.0, 3.0, 3.0, 2.0], equal=same)
    assert r.chosen == 1
    assert "highest reward score (3.000)" in r.reason


def test_reward_truncated_loses_even_with_a_higher_score():
    r = rerank(cands("A", "B", truncated={0}), "reward", scores=[10.0, -4.0], equal=same)
    assert r.chosen == 1


def test_reward_nan_counts_as_lowest():
    r = rerank(cands("A", "B"), "reward", scores=[math.nan, -100.0], equal=same)
    assert r.chosen == 1


def test_reward_with_no_eligible_candidate_chooses_among_all():
    r = rerank(cands("", "", "", truncated={0, 1, 2}), "reward", scores=[0.0, 2.0, 1.0], equal=same)
    assert r.chosen == 1
    assert "all were considered" in r.reason


def test_reward_reads_the_candidates_own_rewards():
    cs = cands("A", "B")
    cs[0].reward, cs[1].reward = -1.0, 0.5
    assert rerank(cs, "reward", equal=same).chosen == 1


def test_reward_without_scores_is_an_input_error():
    with pytest.raises(InputError) as e:
        rerank(cands("A"), "reward", equal=same)
    assert e.value.code == "no_reward_scores"
    assert "奖励" in e.value.message("zh")


# ---------------------------------------------------------------------------------------- reward+vote


def test_reward_vote_one_clearly_better_answer_beats_weak_agreement():
    r = rerank(cands("A", "B", "B"), "reward+vote", scores=[5.0, 0.0, 0.0], equal=same)
    assert r.chosen == 0
    assert r.groups[0].score == pytest.approx(5.0)
    assert r.groups[1].score == pytest.approx(math.log(2))


def test_reward_vote_agreement_beats_a_slightly_better_single():
    r = rerank(cands("A", "B", "B"), "reward+vote", scores=[1.0, 0.9, 0.95], equal=same)
    # B: log(e^0.9 + e^0.95) = 1.62 > 1.0; its best member is candidate 2
    assert r.chosen == 2
    assert r.group_of == [1, 0, 0]
    assert "candidate 2 has its highest reward (0.950)" in r.reason


def test_reward_vote_tie_in_group_score_goes_to_the_larger_group():
    r = rerank(cands("A", "B", "B"), "reward+vote", scores=[math.log(2), 0.0, 0.0], equal=same)
    assert r.groups[0].score == r.groups[1].score
    assert r.chosen == 1  # group B (2 members) wins the tie; its members tie, lower index wins


def test_reward_vote_full_tie_goes_to_the_first_group():
    r = rerank(cands("A", "B"), "reward+vote", scores=[0.0, 0.0], equal=same)
    assert r.chosen == 0


def test_reward_vote_truncated_loses_and_has_no_group():
    r = rerank(cands("A", "B", "B", truncated={1, 2}), "reward+vote", scores=[-3.0, 9.0, 9.0], equal=same)
    assert r.chosen == 0
    assert r.group_of == [0, None, None]


def test_reward_vote_without_scores_falls_back_to_vote_and_says_so():
    r = rerank(cands("A", "B", "B"), "reward+vote", equal=same)
    assert r.chosen == 1 and r.strategy == "vote"
    assert "no reward scores" in r.reason


def test_reward_vote_no_answers_uses_the_reward():
    r = rerank(cands("", "", truncated={0, 1}), "reward+vote", scores=[0.0, 1.0], equal=same)
    assert r.chosen == 1


# ---------------------------------------------------------------------------------------- interfaces


def test_apply_writes_groups_and_rewards():
    cs = cands("A", "B", "B")
    r = rerank(cs, "reward+vote", scores=[0.1, 0.2, 0.3], equal=same)
    r.apply(cs)
    assert [c.group for c in cs] == [1, 0, 0]
    assert [c.reward for c in cs] == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("bad", [[1.0], [1.0, "x"]])
def test_bad_scores_are_input_errors(bad):
    with pytest.raises(InputError) as e:
        rerank(cands("A", "B"), "reward", scores=bad, equal=same)
    assert e.value.code == "bad_scores"


def test_unknown_strategy_and_empty_list_are_input_errors():
    with pytest.raises(InputError) as e:
        check_strategy("best")
    assert "reward+vote" in e.value.message("en") and "策略" in e.value.message("zh")
    with pytest.raises(InputError):
        rerank([], "vote")


# ---------------------------------------------------------------------------------------- properties

candidate_sets = st.lists(
    st.tuples(st.sampled_from(["", "1", "2", "3"]), st.booleans(), st.floats(-5, 5, allow_nan=False)),
    min_size=1, max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(candidate_sets, st.sampled_from(STRATEGIES))
def test_an_eligible_candidate_always_beats_an_ineligible_one(rows, strategy):
    cs = [C(i, a, t) for i, (a, t, _) in enumerate(rows)]
    r = rerank(cs, strategy, scores=[s for *_, s in rows], equal=same)
    if strategy != "first" and any(r.eligible):
        assert r.eligible[r.chosen]
    assert 0 <= r.chosen < len(cs)


@settings(max_examples=150, deadline=None)
@given(candidate_sets, st.floats(-3, 3, allow_nan=False))
def test_reward_vote_with_equal_rewards_is_vote(rows, value):
    cs = [C(i, a, t) for i, (a, t, _) in enumerate(rows)]
    rv = rerank(cs, "reward+vote", scores=[value] * len(cs), equal=same)
    v = rerank(cs, "vote", equal=same)
    assert rv.chosen == v.chosen
    assert rv.group_of == v.group_of


@settings(max_examples=150, deadline=None)
@given(candidate_sets)
def test_reward_winner_has_the_top_eligible_score(rows):
    cs = [C(i, a, t) for i, (a, t, _) in enumerate(rows)]
    scores = [s for *_, s in rows]
    r = rerank(cs, "reward", scores=scores, equal=same)
    pool = [i for i in range(len(cs)) if r.eligible[i]]
    if not pool:  # none eligible: those that finished their thinking come first
        pool = [i for i in range(len(cs)) if not cs[i].truncated] or range(len(cs))
    assert scores[r.chosen] == max(scores[i] for i in pool)
