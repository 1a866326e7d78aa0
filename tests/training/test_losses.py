"""The training objectives against hand-computed values on fixed log-probs and hand-made groups."""

import math

import pytest
import torch

from training.losses import (
    RunningMean,
    bco_loss,
    bt_loss,
    dpo_loss,
    group_advantages,
    grpo_loss,
    mpo_loss,
    token_logps,
)


def ls(x: float) -> float:  # log sigmoid
    return -math.log1p(math.exp(-x))


def test_token_logps_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(4.0), 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    logp, mask = token_logps(logits, labels)
    assert mask.tolist() == [[True, True]]
    assert logp[0, 0].item() == pytest.approx(math.log(3 / 4))  # position 0 predicts label 1
    assert logp[0, 1].item() == pytest.approx(math.log(4 / 5))  # position 1 predicts label 0
    logp2, mask2 = token_logps(logits, torch.tensor([[-100, -100, 0]]))
    assert mask2.tolist() == [[False, True]] and logp2[0, 0].item() == 0.0


def test_dpo_and_bco_by_hand():
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -4.5]), torch.tensor([-11.0, -3.5])
    beta = 0.1
    # pair 0: (pc-rc)-(pr-rr) = 1 - (-1) = 2 ; pair 1: 0.5 - 0.5 = 0
    assert dpo_loss(pc, pr, rc, rr, beta).tolist() == pytest.approx([-ls(0.2), -ls(0.0)])
    delta = 0.03
    expected0 = -ls(0.1 * 1 - delta) - ls(-(0.1 * -1 - delta))
    expected1 = -ls(0.1 * 0.5 - delta) - ls(-(0.1 * 0.5 - delta))
    assert bco_loss(pc, pr, rc, rr, beta, delta).tolist() == pytest.approx([expected0, expected1])


def test_mpo_weights_and_running_delta():
    pc, pr = torch.tensor([-10.0]), torch.tensor([-12.0])
    rc, rr = torch.tensor([-11.0]), torch.tensor([-11.0])
    nll = torch.tensor([2.5])
    running = RunningMean()
    running.update(torch.tensor([0.4, 0.2]))  # an earlier batch: mean 0.3 over 2 rewards
    total, parts = mpo_loss(pc, pr, rc, rr, nll, beta=0.1, weights=(0.8, 0.2, 1.0), running=running)
    # this batch's implicit rewards: 0.1 and -0.1 -> running mean over 4 values = (0.6 + 0.0) / 4
    assert running.mean == pytest.approx(0.15) and running.count == 4
    dpo = -ls(0.1 * 2)
    bco = -ls(0.1 - 0.15) - ls(-(-0.1 - 0.15))
    assert parts["loss_dpo"] == pytest.approx(dpo)
    assert parts["loss_bco"] == pytest.approx(bco)
    assert parts["loss_sft"] == pytest.approx(2.5)
    assert total.item() == pytest.approx(0.8 * dpo + 0.2 * bco + 1.0 * 2.5)
    state = running.state_dict()
    again = RunningMean()
    again.load_state_dict(state)
    assert (again.mean, again.count) == (running.mean, running.count)


def test_mpo_loss_has_gradients_for_policy_only():
    pc = torch.tensor([-3.0], requires_grad=True)
    pr = torch.tensor([-4.0], requires_grad=True)
    total, _ = mpo_loss(pc, pr, torch.tensor([-3.0]), torch.tensor([-4.0]), -pc / 3)
    total.backward()
    assert pc.grad is not None and pc.grad.item() < 0  # raising the chosen log-prob lowers the loss
    assert pr.grad.item() > 0


def test_bt_loss_margin_and_centering():
    rp, rn, m = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.0])
    total, parts = bt_loss(rp, rn)
    assert parts["loss_bt"] == pytest.approx((-ls(1.0) - ls(-0.5)) / 2)
    assert parts["accuracy"] == 0.5
    total_m, parts_m = bt_loss(rp, rn, margin=m, center_coef=0.1)
    bt = (-ls(0.5) - ls(-0.5)) / 2
    center = (3.0**2 + 1.5**2) / 2
    assert parts_m["loss_bt"] == pytest.approx(bt)
    assert total_m.item() == pytest.approx(bt + 0.1 * center)


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(r, 4, scale=False)
    assert adv.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    adv_s = group_advantages(r, 4, scale=True, eps=0.0)
    std = math.sqrt(4 * 0.25 / 3)  # unbiased
    assert adv_s[:4].tolist() == pytest.approx([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std])
    assert adv_s[4:].tolist() == [0.0] * 4  # a vanished group is exactly zero


def test_grpo_clipping_with_higher_upper_clip():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[0.5, 0.9, 1.25, 1.5]]))  # ratios 0.5, 0.9, 1.25, 1.5
    mask = torch.ones(1, 4, dtype=torch.bool)
    pos, neg = torch.tensor([1.0]), torch.tensor([-1.0])
    # A > 0: -min(r, clip(r, 0.8, 1.2)) -> -[0.5, 0.9, 1.2, 1.2]
    loss, parts = grpo_loss(logp, old, pos, mask, epsilon=0.2, loss_type="token")
    assert loss.item() == pytest.approx(-(0.5 + 0.9 + 1.2 + 1.2) / 4)
    assert parts["clip_fraction"] == pytest.approx(0.5)
    # clip-higher 0.28: upper bound 1.28 -> -[0.5, 0.9, 1.25, 1.28]
    loss_h, _ = grpo_loss(logp, old, pos, mask, epsilon=0.2, epsilon_high=0.28)
    assert loss_h.item() == pytest.approx(-(0.5 + 0.9 + 1.25 + 1.28) / 4)
    # A < 0: -min(-r, -clip(r)) = max(r, clip(r)) -> [0.8, 0.9, 1.25, 1.5]
    loss_n, parts_n = grpo_loss(logp, old, neg, mask, epsilon=0.2)
    assert loss_n.item() == pytest.approx((0.8 + 0.9 + 1.25 + 1.5) / 4)
    assert parts_n["clip_fraction"] == pytest.approx(0.25)


def test_grpo_token_vs_sequence_aggregation():
    logp = torch.zeros(2, 3)
    old = torch.zeros(2, 3)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    adv = torch.tensor([3.0, 1.0])  # ratio 1 everywhere: per-token loss = -A
    tok, _ = grpo_loss(logp, old, adv, mask, loss_type="token")
    seq, _ = grpo_loss(logp, old, adv, mask, loss_type="sequence")
    assert tok.item() == pytest.approx(-(3 + 1 + 1 + 1) / 4)
    assert seq.item() == pytest.approx(-(3 + 1) / 2)


def test_grpo_kl_term():
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss, parts = grpo_loss(logp, logp.clone(), torch.tensor([0.0]), mask, ref_logp=ref, kl_beta=0.5)
    d = math.log(0.5)  # ref - logp
    kl = math.exp(d) - d - 1
    assert parts["kl"] == pytest.approx(kl)
    assert loss.item() == pytest.approx(0.5 * kl)
