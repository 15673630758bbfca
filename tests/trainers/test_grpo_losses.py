"""GRPO's advantages and loss against DeepSeekMath's formulas (eqs. 3 and 4), written out per token in plain Python
on fixed log-probabilities (trl is not installed here), and the rewards' scoring."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from ludwig_llm.trainers.grpo_losses import ADVANTAGE_EPSILON, group_advantages, grpo_token_losses
from ludwig_llm.trainers.rewards import last_number

LOG_PROBS = [[-0.5, -1.2, -0.1], [-2.0, -0.3, -0.9]]
OLD = [[-0.7, -1.0, -0.1], [-1.5, -0.9, -0.9]]
REFERENCE = [[-0.6, -1.5, -0.2], [-1.8, -0.4, -1.4]]
ADVANTAGES = [1.5, -0.8]


def paper_token_loss(logp, old, ref, advantage, beta, epsilon):
    ratio = math.exp(logp - old)
    objective = min(ratio * advantage, min(max(ratio, 1 - epsilon), 1 + epsilon) * advantage)
    kl = math.exp(ref - logp) - (ref - logp) - 1  # pi_ref / pi - log(pi_ref / pi) - 1
    return -(objective - beta * kl), kl


@pytest.mark.parametrize("beta, epsilon", [(0.04, 0.2), (0.0, 0.2), (0.5, 0.05)])
def test_token_losses_match_the_papers_formula(beta, epsilon):
    losses, kl, clipped = grpo_token_losses(torch.tensor(LOG_PROBS), torch.tensor(OLD), torch.tensor(REFERENCE),
                                            torch.tensor(ADVANTAGES), beta, epsilon)
    for i, advantage in enumerate(ADVANTAGES):
        for t in range(3):
            expected_loss, expected_kl = paper_token_loss(LOG_PROBS[i][t], OLD[i][t], REFERENCE[i][t], advantage, beta, epsilon)
            assert losses[i, t].item() == pytest.approx(expected_loss, rel=1e-5, abs=1e-6)
            assert kl[i, t].item() == pytest.approx(expected_kl, rel=1e-5, abs=1e-7)
    assert clipped.any() and not clipped.all()  # the fixture's ratios fall on both sides of the clip range


def test_with_the_sampling_policy_as_old_the_gradient_is_advantage_times_grad_log_prob():
    log_probs = torch.tensor(LOG_PROBS, requires_grad=True)
    losses, _, _ = grpo_token_losses(log_probs, log_probs.detach(), log_probs.detach(), torch.tensor(ADVANTAGES), 0.04, 0.2)
    losses.sum().backward()
    expected = -torch.tensor(ADVANTAGES).unsqueeze(-1).expand(2, 3)  # ratio 1, KL 0 with zero gradient
    assert torch.allclose(log_probs.grad, expected)


def test_group_advantages_normalise_within_each_prompts_group():
    rewards = [[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [3.0, 1.0, 2.0, 0.0]]
    advantages = group_advantages(torch.tensor(rewards))
    for row, values in zip(advantages.tolist(), rewards):
        mean, std = statistics.mean(values), statistics.stdev(values)
        assert row == pytest.approx([(v - mean) / (std + ADVANTAGE_EPSILON) for v in values], rel=1e-5, abs=1e-6)
    assert advantages[1].abs().max() == 0  # equal rewards teach nothing


def test_reward_types_score_completions(make_config):
    from ludwig_llm.schema import load_config
    from ludwig_llm.trainers.rewards import build_rewards

    rewards = [{"type": "exact_match", "ignore_case": True}, {"type": "regex", "pattern": r"\d+"},
               {"type": "regex", "pattern": r"\d+", "full_match": False, "weight": 0.5},
               {"type": "numeric_answer", "column": "number", "tolerance": 0.01}, {"type": "length_penalty", "max_characters": 4}]
    config = load_config(make_config(trainer={"_replace": True, "type": "grpo", "rewards": rewards}))
    built = build_rewards(config, [lambda completions, rows: [1.0] * len(completions)])
    assert [r.name for r in built] == ["exact_match", "regex", "regex_2", "numeric_answer", "length_penalty", "function_0"]
    completions = [" Paris ", "the answer is 1,234.5", "42"]
    rows = [{"record": "paris", "number": "7"}, {"record": "x", "number": "1234.501"}, {"record": "42", "number": "41"}]
    scores = [r(completions, rows) for r in built]
    assert scores[0] == [1.0, 0.0, 1.0]
    assert scores[1] == [0.0, 0.0, 1.0] and scores[2] == [0.0, 1.0, 1.0]
    assert scores[3] == [0.0, 1.0, 0.0]
    assert scores[4] == pytest.approx([-3 / 4, -17 / 4, 0.0])
    assert scores[5] == [1.0, 1.0, 1.0]
    assert last_number("no digits") is None and last_number("-3e2 then 5.") == 5.0
