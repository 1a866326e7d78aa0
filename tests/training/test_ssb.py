"""The Selective Sample Buffer: replacement of vanished groups, |advantage| weighting, size, staleness."""

import math

import pytest

from training.ssb import Sample, SelectiveSampleBuffer


def s(adv: float, step: int = 0, rec: int = 0) -> Sample:
    return Sample(record=rec, completion_ids=[1, 2], advantage=adv, reward=0.0, step=step, old_logps=[-1.0, -2.0])


def test_keeps_effective_and_replaces_vanished_groups():
    buf = SelectiveSampleBuffer(size=10, replay_share=0.5, max_staleness=5, seed=0)
    buf.add([s(1.0), s(-1.0), s(0.0)], step=0)
    assert len(buf) == 2  # zero-advantage samples are not kept
    # step 1: group A effective (2 samples), group B vanished (2 samples)
    fresh = [s(0.7, 1), s(-0.7, 1), s(0.0, 1), s(0.0, 1)]
    batch, stats = buf.select(fresh, step=1)
    replayed = [b for b in batch if b.replayed]
    assert len(batch) == 4 and len(replayed) == 2  # min(2 vanished, 0.5 * 4, 2 buffered)
    assert all(b.step == 0 and b.old_logps == [-1.0, -2.0] for b in replayed)
    assert stats["effective_share_fresh"] == 0.5 and stats["effective_share"] == 1.0
    # the replay share caps the replays
    buf2 = SelectiveSampleBuffer(size=10, replay_share=0.25, max_staleness=5, seed=0)
    buf2.add([s(1.0), s(2.0), s(3.0)], step=0)
    batch2, stats2 = buf2.select([s(0.0, 1)] * 4, step=1)
    assert len(batch2) == 4 and stats2["replayed"] == 1.0 and stats2["effective_share_fresh"] == 0.0
    assert [b.replayed for b in batch2] == [True, False, False, False]  # the first vanished slot, only


def test_only_vanished_slots_are_filled():
    buf = SelectiveSampleBuffer(size=10, replay_share=1.0, max_staleness=5, seed=0)
    buf.add([s(2.0, 0, rec=9)], step=0)
    fresh = [s(0.0, 1, rec=1), s(0.5, 1, rec=2), s(-0.5, 1, rec=2), s(0.0, 1, rec=1)]
    batch, _ = buf.select(fresh, step=1)
    assert [b.record for b in batch] == [9, 2, 2, 1]  # slot 0 replayed; effective rows untouched; slot 3 kept
    assert batch[1] is fresh[1] and batch[2] is fresh[2] and batch[3] is fresh[3]


def test_draws_proportional_to_abs_advantage():
    buf = SelectiveSampleBuffer(size=10, replay_share=1.0, max_staleness=100, seed=123)
    buf.add([s(1.0, rec=0), s(-3.0, rec=1)], step=0)
    trials = 4000
    hits = sum(buf.draw(1, step=0)[0].record == 1 for _ in range(trials))
    p = 0.75
    sd = math.sqrt(trials * p * (1 - p))
    assert abs(hits - trials * p) < 4 * sd  # |adv| 3 vs 1 -> drawn 3 times as often


def test_respects_size_and_evicts_oldest():
    buf = SelectiveSampleBuffer(size=5, replay_share=1.0, max_staleness=100, seed=0)
    for step in range(6):
        buf.add([s(1.0, step, rec=step), s(-1.0, step, rec=step)], step)
        assert len(buf) <= 5
    assert len(buf) == 5
    assert sorted({x.step for x in buf.items}) == [3, 4, 5]  # the oldest went first


def test_staleness_limit():
    buf = SelectiveSampleBuffer(size=10, replay_share=1.0, max_staleness=2, seed=0)
    buf.add([s(5.0, 0, rec=0)], 0)
    buf.add([s(1.0, 3, rec=3)], 3)
    drawn = buf.draw(2, step=3)  # the step-0 sample is 3 steps old: dropped
    assert [d.record for d in drawn] == [3] and len(buf) == 1


def test_state_round_trip_gives_same_draws():
    buf = SelectiveSampleBuffer(size=10, replay_share=1.0, max_staleness=10, seed=7)
    buf.add([s(float(i + 1), 0, rec=i) for i in range(6)], 0)
    state = buf.state_dict()
    first = [d.record for d in buf.draw(3, 1)]
    other = SelectiveSampleBuffer(size=10, replay_share=1.0, max_staleness=10, seed=99)
    other.load_state_dict(state)
    assert [d.record for d in other.draw(3, 1)] == first


def test_empty_buffer_replays_nothing():
    buf = SelectiveSampleBuffer(size=4, replay_share=1.0, max_staleness=1, seed=0)
    fresh = [s(0.0), s(0.0)]
    batch, stats = buf.select(fresh, step=0)
    assert batch == fresh and stats["effective_share"] == 0.0  # the vanished samples keep their slots
    with pytest.raises(TypeError):
        Sample(record=0)  # all fields but the log-probs are required
