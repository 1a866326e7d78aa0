"""Choose the candidate to show: reward scores, agreement between final answers, or both.

    from engine.rerank import rerank
    result = rerank(solution.candidates, "reward+vote", scores=[0.3, 1.2, -0.4, 0.9])
    result.chosen, result.group_of[result.chosen], result.reason
    result.apply(solution.candidates)          # sets Candidate.reward and Candidate.group

A plain function over anything shaped like ``engine.core.Candidate`` (``index``, ``answer``,
``truncated``, optional ``reward``), so every backend (in-process, HTTP) uses the same choice.

Strategies (``STRATEGIES``):

- ``first``: no reranking, the first sample -- the baseline that n = 1 gives.
- ``vote``: the largest group of equivalent final answers (``tutor.answers.equivalent``); its first
  member.
- ``reward``: the highest reward score.
- ``reward+vote`` (default): groups of equivalent answers, each scored from its members' rewards,
  then the best-scored member of the best group. A group's score is ``log(sum(exp(r_i)))`` over its
  members: the reward model is a Bradley-Terry model, in which ``exp(r)`` is a response's strength,
  so the group score is the log of the group's total strength. With equal rewards it is majority
  vote (a group of k scores ``r + log k``); one clearly better answer (a reward several units
  higher) outweighs a few weak agreeing ones. Without scores it falls back to ``vote`` and says so.

Rules shared by every strategy but ``first``: a candidate that was truncated (never closed its
thinking) or has no final answer is *ineligible*, and loses to any eligible one; only when none is
eligible does the strategy choose among all: those that finished their thinking first, then by
reward when there are scores, else the first. Ties are broken the same way everywhere: larger group, then the lower
candidate index. A NaN score counts as the lowest. Groups are numbered 0, 1, ... in the strategy's
order (0 = the group of the winner for ``vote`` and ``reward+vote``; by size for the others).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tutor.errors import InputError

log = logging.getLogger(__name__)

STRATEGIES = ("first", "vote", "reward", "reward+vote")
DEFAULT_STRATEGY = "reward+vote"


@dataclass
class Group:
    """Candidates (by position in the list) whose final answers are equivalent."""

    members: list[int]
    answer: str  # the first member's answer
    score: float | None = None  # reward+vote: log-sum-exp of the members' rewards

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class RerankResult:
    chosen: int  # position of the winner in the candidate list
    strategy: str  # the strategy applied (``reward+vote`` without scores applies ``vote``)
    reason: str  # one sentence a person can check against the candidates
    groups: list[Group] = field(default_factory=list)
    group_of: list[int | None] = field(default_factory=list)  # per candidate; None: no final answer
    scores: list[float] | None = None
    eligible: list[bool] = field(default_factory=list)

    def apply(self, candidates: Sequence) -> None:
        """Write ``group`` (and ``reward``, when there are scores) onto the candidates."""
        for i, c in enumerate(candidates):
            c.group = self.group_of[i]
            if self.scores is not None:
                c.reward = self.scores[i]


def _bad(code: str, en: str, zh: str, detail: str = "") -> InputError:
    return InputError(code, en, zh, detail=detail)


def check_strategy(strategy: str, has_reward: bool = True) -> str:
    """``strategy`` if it is known (and, for ``reward``, there is a reward model); else an InputError."""
    if strategy not in STRATEGIES:
        raise _bad("unknown_rerank", f"Unknown rerank strategy '{strategy}'. Use one of: {', '.join(STRATEGIES)}.",
                   f"未知的候选选择策略“{strategy}”，可选：{'、'.join(STRATEGIES)}。")
    if strategy == "reward" and not has_reward:
        raise _bad("no_reward_scores", "The 'reward' strategy needs reward scores: choose a reward model.",
                   "“reward”策略需要奖励分数：请选择一个奖励模型。")
    return strategy


def _check(candidates: Sequence, strategy: str, scores: Sequence[float] | None) -> list[float] | None:
    check_strategy(strategy)
    if not candidates:
        raise _bad("no_candidates", "There are no candidate solutions to choose from.", "没有可供选择的候选解答。")
    if scores is None:
        rewards = [getattr(c, "reward", None) for c in candidates]
        if all(r is not None for r in rewards):
            scores = rewards
    if scores is None:
        return None
    if len(scores) != len(candidates):
        raise _bad("bad_scores", f"Got {len(scores)} reward scores for {len(candidates)} candidates.",
                   f"奖励分数的数量（{len(scores)}）与候选解答的数量（{len(candidates)}）不一致。")
    try:
        out = [float(s) for s in scores]
    except (TypeError, ValueError) as e:
        raise _bad("bad_scores", "Reward scores must be numbers.", "奖励分数必须是数字。", detail=repr(e)) from e
    return out


def _key(score: float) -> float:
    return -math.inf if math.isnan(score) else score


def group_answers(candidates: Sequence, eligible: Sequence[bool],
                  equal: Callable[[str, str], bool] | None = None) -> list[Group]:
    """Groups of equivalent final answers among the eligible candidates, in order of first member.

    A candidate joins the first group whose first member's answer it is equivalent to.
    """
    if equal is None:
        from tutor.answers import equivalent as equal
    groups: list[Group] = []
    for i, c in enumerate(candidates):
        if not eligible[i]:
            continue
        for g in groups:
            if c.answer == g.answer or equal(g.answer, c.answer):
                g.members.append(i)
                break
        else:
            groups.append(Group([i], c.answer))
    return groups


def _logsumexp(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return -math.inf
    top = max(finite)
    if math.isinf(top):
        return top
    return top + math.log(sum(math.exp(v - top) for v in finite))


def rerank(candidates: Sequence, strategy: str = DEFAULT_STRATEGY, scores: Sequence[float] | None = None, *,
           equal: Callable[[str, str], bool] | None = None) -> RerankResult:
    """Choose among ``candidates`` with ``strategy`` (see the module docstring).

    ``scores``: one reward per candidate, in order; when None, the candidates' own ``reward``
    fields are used if all are set. ``strategy="reward"`` with no scores is an InputError;
    ``"reward+vote"`` with none applies ``vote``. ``equal(a, b)`` decides answer equivalence
    (default ``tutor.answers.equivalent``). Positions in the result index ``candidates``.
    """
    scores = _check(candidates, strategy, scores)
    check_strategy(strategy, has_reward=scores is not None)
    applied = "vote" if strategy == "reward+vote" and scores is None else strategy
    eligible = [bool(c.answer) and not c.truncated for c in candidates]
    groups = group_answers(candidates, eligible, equal) if any(eligible) else []

    if applied == "reward+vote":
        for g in groups:
            g.score = _logsumexp([scores[i] for i in g.members])
        groups.sort(key=lambda g: (-_key(g.score), -g.size, g.members[0]))
    else:
        groups.sort(key=lambda g: (-g.size, g.members[0]))
    group_of: list[int | None] = [None] * len(candidates)
    for gi, g in enumerate(groups):
        for i in g.members:
            group_of[i] = gi

    n = len(candidates)
    pool = [i for i in range(n) if eligible[i]] or list(range(n))
    note = "" if any(eligible) else " (no candidate has a final answer, so all were considered)"

    def by_reward(i: int) -> tuple:  # finished beats truncated (only matters with no eligible one)
        return (not candidates[i].truncated, _key(scores[i]), -i)
    if applied == "first":
        chosen = 0
        reason = "first: no reranking, the first sample is shown"
    elif applied == "reward":
        chosen = max(pool, key=by_reward)
        reason = f"reward: candidate {chosen} has the highest reward score ({scores[chosen]:.3f}) of {len(pool)}{note}"
    elif not groups:  # vote or reward+vote, nothing to agree on
        if scores is not None:
            chosen = max(pool, key=by_reward)
            reason = (f"{applied}: no candidate has a final answer; candidate {chosen} has the highest reward"
                      " of those that finished their thinking, if any")
        else:
            chosen = next((i for i in range(n) if not candidates[i].truncated), 0)
            reason = f"{applied}: no candidate has a final answer; candidate {chosen} is the first that finished"
    elif applied == "vote":
        best = groups[0]
        chosen = best.members[0]
        reason = (f"vote: answer {best.answer!r} is given by {best.size} of {n} candidates (the largest group"
                  f"{_tie(groups)}); candidate {chosen} is its first")
        if strategy == "reward+vote":
            reason += " (no reward scores, so by agreement only)"
    else:  # reward+vote
        best = groups[0]
        chosen = max(best.members, key=lambda i: (_key(scores[i]), -i))
        reason = (f"reward+vote: answer {best.answer!r} ({best.size} of {n} candidates) has the best group score "
                  f"{best.score:.3f} (log-sum-exp of its rewards"
                  + (f"; next: {groups[1].answer!r} with {groups[1].score:.3f}" if len(groups) > 1 else "")
                  + f"); candidate {chosen} has its highest reward ({scores[chosen]:.3f})")
    log.debug("rerank %s -> %d: %s", strategy, chosen, reason)
    return RerankResult(chosen=chosen, strategy=applied, reason=reason, groups=groups, group_of=group_of,
                        scores=scores, eligible=eligible)


def _tie(groups: list[Group]) -> str:
    if len(groups) > 1 and groups[1].size == groups[0].size:
        return ", tied in size and first to appear"
    return ""
