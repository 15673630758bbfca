"""Preference losses on sequence log-probabilities, one value per row (the caller sums and normalises them).

Inputs are summed log-probabilities of each response's tokens under the policy and the reference model
(ORPO: per-token means, as its paper). Rewards (for statistics) are the implicit rewards of each method,
detached from the graph.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ludwig_llm.data.tokenize import IGNORE_INDEX


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(log-probability of each labelled token, zero elsewhere; the mask of labelled tokens), both (rows, length - 1):
    a causal LM's logits at position t predict the token at t + 1, and labels of IGNORE_INDEX (prompt, padding) are
    left out."""
    logits, labels = logits[:, :-1, :], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    values = torch.gather(logits.float().log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return values * mask, mask


def sequence_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability of each row's labelled tokens, their number)."""
    values, mask = token_log_probs(logits, labels)
    return values.sum(-1), mask.sum(-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Per-pair DPO losses and rewards.

    sigmoid: -log sigmoid(beta * h), h = (log pi(c) - log pi(r)) - (log ref(c) - log ref(r)) (Rafailov et al. 2023,
    "Direct Preference Optimization", eq. 7); with label smoothing e: (1 - e) of it plus e of the flipped pair's
    loss (conservative DPO, Mitchell 2023). ipo: (h - 1 / (2 beta))^2 (Azar et al. 2023, "A General Theoretical
    Paradigm to Understand Learning from Human Preferences", eq. 17). hinge: max(0, 1 - beta * h) (Zhao et al. 2023, SLiC-HF).
    """
    h = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h) * (1 - label_smoothing) - F.logsigmoid(-beta * h) * label_smoothing
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    else:
        raise ValueError(f"unknown DPO loss type {loss_type!r}.")
    rewards = {"chosen": beta * (policy_chosen - reference_chosen).detach(),
               "rejected": beta * (policy_rejected - reference_rejected).detach()}
    return losses, rewards


def orpo_odds_ratio_loss(chosen_mean: torch.Tensor, rejected_mean: torch.Tensor, beta: float) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Per-pair ORPO odds-ratio term, beta * -log sigmoid(log odds(c) - log odds(r)) with odds(y) = P(y) / (1 - P(y))
    and P the per-token mean likelihood (Hong et al. 2024, "ORPO: Monolithic Preference Optimization without
    Reference Model", eqs. 4-7); the full loss adds the chosen response's token loss. Rewards: beta * mean log-probability."""
    log_odds = (chosen_mean - rejected_mean) - (torch.log1p(-torch.exp(chosen_mean)) - torch.log1p(-torch.exp(rejected_mean)))
    losses = -beta * F.logsigmoid(log_odds)
    return losses, {"chosen": beta * chosen_mean.detach(), "rejected": beta * rejected_mean.detach()}


def kto_loss(policy: torch.Tensor, reference: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-row KTO losses and rewards (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
    Optimization", eq. 8): with r = log pi(y) - log ref(y) and the reference point z = max(0, KL) (no gradient),
    desirable rows lose w_d * (1 - sigmoid(beta (r - z))), undesirable ones w_u * (1 - sigmoid(beta (z - r)))."""
    ratio = policy - reference
    z = kl.detach().clamp(min=0)
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (ratio - z))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (z - ratio))))
    return losses, beta * ratio.detach()
