"""GRPO's advantages and per-token loss (Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical
Reasoning in Open Language Models", section 4.1).

The objective, eq. 3, for the G completions o_1..o_G of a prompt q sampled from the old policy:

    J = 1/G sum_i 1/|o_i| sum_t { min(r_it A_it, clip(r_it, 1 - eps, 1 + eps) A_it) - beta D_KL[pi_theta || pi_ref] }
    r_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t)

with outcome supervision (section 4.1.2) giving every token of o_i the group-normalised reward
A_it = (R_i - mean(R)) / std(R), and the KL estimated per token by the unbiased, always positive k3 estimator, eq. 4:

    D_KL = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1

Averaging: the loss here is the mean over all completion tokens of a step (the token-level mean of DAPO, Yu et al.
2025, section 3.3, and trl's `loss_type: dapo`) rather than the paper's mean of per-completion means, so that long
and short completions weigh by their tokens, like the finetune loop's token-normalised loss.
"""

from __future__ import annotations

from typing import Tuple

import torch

ADVANTAGE_EPSILON = 1e-4  # keeps a group whose rewards are all equal at advantage 0 instead of 0 / 0


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(prompts, G) rewards -> advantages (R - mean(R)) / (std(R) + eps) within each prompt's group (the sample
    standard deviation, as trl)."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + ADVANTAGE_EPSILON)


def grpo_token_losses(log_probs: torch.Tensor, old_log_probs: torch.Tensor, reference_log_probs: torch.Tensor,
                      advantages: torch.Tensor, beta: float, epsilon: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token losses -(min(r A, clip(r, 1 - eps, 1 + eps) A) - beta D_KL), with the k3 KL and whether the ratio was
    clipped, each (completions, tokens); `advantages` is (completions,). The caller masks and averages them.
    With one update per sampling (old = detached current log-probabilities) r is 1 and the gradient is A grad log pi."""
    ratio = torch.exp(log_probs - old_log_probs)
    advantage = advantages.unsqueeze(-1)
    clipped_ratio = ratio.clamp(1 - epsilon, 1 + epsilon)
    objective = torch.min(ratio * advantage, clipped_ratio * advantage)
    log_ref_ratio = reference_log_probs - log_probs
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
    return -(objective - beta * kl), kl.detach(), (clipped_ratio * advantage < ratio * advantage).detach()
