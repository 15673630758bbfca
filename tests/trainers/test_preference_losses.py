"""Each preference loss against its paper's formula, written out element by element in plain Python on fixed
log-probabilities (trl is not installed here): DPO (Rafailov et al. 2023), IPO (Azar et al. 2023), hinge (SLiC,
Zhao et al. 2023), ORPO (Hong et al. 2024), KTO (Ethayarajh et al. 2024)."""

from __future__ import annotations

import math

import pytest
import torch

from ludwig_llm.trainers.preference_losses import dpo_loss, kto_loss, orpo_odds_ratio_loss, sequence_log_probs

POLICY_CHOSEN = [-12.0, -30.5, -7.25, -50.0]
POLICY_REJECTED = [-14.0, -29.0, -9.5, -48.0]
REFERENCE_CHOSEN = [-13.0, -31.0, -8.0, -49.0]
REFERENCE_REJECTED = [-13.5, -30.0, -9.0, -47.0]


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def tensors(*lists):
    return [torch.tensor(values, dtype=torch.float64) for values in lists]


def margins():
    return [(pc - pr) - (rc - rr) for pc, pr, rc, rr in zip(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED)]


@pytest.mark.parametrize("beta, smoothing", [(0.1, 0.0), (0.5, 0.0), (0.1, 0.2)])
def test_dpo_sigmoid_is_the_papers_loss(beta, smoothing):
    losses, rewards = dpo_loss(*tensors(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED), beta, "sigmoid", smoothing)
    expected = [-(1 - smoothing) * log_sigmoid(beta * h) - smoothing * log_sigmoid(-beta * h) for h in margins()]
    assert losses.tolist() == pytest.approx(expected, rel=1e-12)
    assert rewards["chosen"].tolist() == pytest.approx([beta * (p - r) for p, r in zip(POLICY_CHOSEN, REFERENCE_CHOSEN)])
    assert rewards["rejected"].tolist() == pytest.approx([beta * (p - r) for p, r in zip(POLICY_REJECTED, REFERENCE_REJECTED)])


def test_ipo_and_hinge_are_their_papers_losses():
    beta = 0.25
    args = tensors(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED)
    ipo, _ = dpo_loss(*args, beta, "ipo")
    hinge, _ = dpo_loss(*args, beta, "hinge")
    assert ipo.tolist() == pytest.approx([(h - 1 / (2 * beta)) ** 2 for h in margins()], rel=1e-12)
    assert hinge.tolist() == pytest.approx([max(0.0, 1 - beta * h) for h in margins()], rel=1e-12)


def test_orpo_odds_ratio_is_the_papers_term():
    beta = 0.2
    chosen, rejected = [-0.5, -1.25, -2.0], [-0.75, -0.4, -3.0]  # per-token mean log-probabilities
    losses, rewards = orpo_odds_ratio_loss(*tensors(chosen, rejected), beta)

    def log_odds(mean_log_p):
        p = math.exp(mean_log_p)
        return math.log(p / (1 - p))

    expected = [-beta * log_sigmoid(log_odds(c) - log_odds(r)) for c, r in zip(chosen, rejected)]
    assert losses.tolist() == pytest.approx(expected, rel=1e-10)
    assert rewards["chosen"].tolist() == pytest.approx([beta * c for c in chosen])


@pytest.mark.parametrize("kl", [0.3, -0.4])  # a negative KL estimate is clamped to 0
def test_kto_is_the_papers_loss(kl):
    beta, w_d, w_u = 0.1, 1.5, 0.75
    desirable = [True, False, True, False]
    losses, rewards = kto_loss(*tensors(POLICY_CHOSEN, REFERENCE_CHOSEN), torch.tensor(desirable), torch.tensor(kl, dtype=torch.float64),
                               beta, w_d, w_u)
    z = max(0.0, kl)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [w_d * (1 - sigmoid(beta * ((p - r) - z))) if d else w_u * (1 - sigmoid(beta * (z - (p - r))))
                for p, r, d in zip(POLICY_CHOSEN, REFERENCE_CHOSEN, desirable)]
    assert losses.tolist() == pytest.approx(expected, rel=1e-12)
    assert rewards.tolist() == pytest.approx([beta * (p - r) for p, r in zip(POLICY_CHOSEN, REFERENCE_CHOSEN)])


def test_sequence_log_probs_sum_the_labelled_tokens_only():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=generator)
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 6, -100, -100]])
    summed, counts = sequence_log_probs(logits, labels)
    log_probs = logits.log_softmax(-1)
    expected = [log_probs[0, 1, 3] + log_probs[0, 2, 4] + log_probs[0, 3, 1], log_probs[1, 0, 2] + log_probs[1, 1, 6]]
    assert summed.tolist() == pytest.approx([float(e) for e in expected], rel=1e-6)
    assert counts.tolist() == [3, 2]
