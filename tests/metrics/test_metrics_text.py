import json
import math

import pytest
import torch
import torch.nn.functional as F

from ludwig_llm.metrics.text import IGNORE_INDEX, TokenLossAccumulator, generation_metrics

PREDICTIONS = ["the cat sat on the mat", "a quick brown fox jumps", "hello world", "  exactly this  "]
TARGETS = ["the cat is sitting on the mat", "the quick brown fox jumped", "goodbye world", "exactly this"]


def test_bleu_matches_sacrebleu():
    import sacrebleu

    expected = sacrebleu.corpus_bleu(PREDICTIONS, [TARGETS]).score / 100
    assert generation_metrics(PREDICTIONS, TARGETS)["bleu"] == pytest.approx(expected)
    assert 0 < expected < 1


def test_rouge_matches_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rows = [scorer.score(t, p) for p, t in zip(PREDICTIONS, TARGETS)]
    metrics = generation_metrics(PREDICTIONS, TARGETS)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert metrics[key] == pytest.approx(sum(r[key].fmeasure for r in rows) / len(rows))
    # Stemming is on: "jumps" vs "jumped" share the stem "jump".
    single = generation_metrics(["fox jumps"], ["fox jumped"])
    assert single["rouge1"] == pytest.approx(1.0)


def test_char_error_rate_hand_checked():
    # "kitten" -> "sitting": 3 edits over 7 target chars; "abc" == "abc": 0 over 3.
    assert generation_metrics(["kitten"], ["sitting"])["char_error_rate"] == pytest.approx(3 / 7)
    assert generation_metrics(["kitten", "abc"], ["sitting", "abc"])["char_error_rate"] == pytest.approx(3 / 10)


def test_exact_match_strips_whitespace():
    assert generation_metrics(PREDICTIONS, TARGETS)["exact_match"] == pytest.approx(1 / 4)
    assert generation_metrics(["Yes\n"], ["yes"])["exact_match"] == 0.0  # case matters


def test_generation_metrics_json_and_validation():
    metrics = generation_metrics(PREDICTIONS, TARGETS)
    assert set(metrics) == {"bleu", "rouge1", "rouge2", "rougeL", "char_error_rate", "exact_match"}
    assert all(type(v) is float for v in metrics.values())
    json.dumps(metrics)
    with pytest.raises(ValueError):
        generation_metrics(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        generation_metrics([], [])


def _random_batch(generator, batch=3, seq=7, vocab=11):
    logits = torch.randn(batch, seq, vocab, generator=generator)
    labels = torch.randint(0, vocab, (batch, seq), generator=generator)
    labels[torch.rand(batch, seq, generator=generator) < 0.3] = IGNORE_INDEX
    labels[0, 1] = 5  # at least one scored position
    return logits, labels


def test_token_loss_matches_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    batches = [_random_batch(generator) for _ in range(3)]
    acc = TokenLossAccumulator()
    for logits, labels in batches:
        acc.update(logits, labels)
    result = acc.compute()

    # Reference: one cross_entropy over all shifted batches, averaged per token.
    all_logits = torch.cat([lg[:, :-1].reshape(-1, lg.shape[-1]) for lg, _ in batches])
    all_labels = torch.cat([lb[:, 1:].reshape(-1) for _, lb in batches])
    expected = F.cross_entropy(all_logits, all_labels, ignore_index=-100).item()
    keep = all_labels != -100
    expected_acc = (all_logits[keep].argmax(-1) == all_labels[keep]).float().mean().item()

    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    assert result["next_token_accuracy"] == pytest.approx(expected_acc)
    json.dumps(result)

    acc.reset()
    assert math.isnan(acc.compute()["loss"])


def test_token_loss_without_shift_and_perfect_predictions():
    labels = torch.tensor([[2, 0, IGNORE_INDEX, 1]])
    logits = torch.full((1, 4, 3), -1e4)
    logits[0, [0, 1, 3], [2, 0, 1]] = 1e4
    acc = TokenLossAccumulator(shift_labels=False)
    acc.update(logits.to(torch.bfloat16), labels)
    result = acc.compute()
    assert result["loss"] == pytest.approx(0.0, abs=1e-6)
    assert result["perplexity"] == pytest.approx(1.0)
    assert result["next_token_accuracy"] == 1.0


def test_token_loss_skips_fully_masked_batch():
    acc = TokenLossAccumulator()
    acc.update(torch.randn(2, 4, 5), torch.full((2, 4), IGNORE_INDEX))
    assert math.isnan(acc.compute()["loss"])
