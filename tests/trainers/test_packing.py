"""Sample packing: rows packed into shared sequences give the logits and losses of the rows alone, and
training with packing takes the same steps as without (same loss, same gradient)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from ludwig_llm.data.packing import PackingCollator, first_fit_decreasing
from ludwig_llm.data.tokenize import PaddingCollator
from ludwig_llm.errors import UserError
from ludwig_llm.schema import load_config
from tests.conftest import tiny_config
from tests.trainers.test_trainer_loop import PAD_ID, assert_same_weights, checkpoint_weights, run, synthetic_rows


def test_first_fit_decreasing_fills_packs_longest_first_within_the_limits():
    lengths = [5, 3, 8, 2, 4, 1]
    packs = first_fit_decreasing(lengths, capacity=8)
    assert sorted(i for pack in packs for i in pack) == list(range(6))
    assert all(sum(lengths[i] for i in pack) <= 8 for pack in packs)
    assert packs == [[2], [0, 1], [4, 3, 5]]
    limited = first_fit_decreasing(lengths, capacity=8, max_sequences_per_pack=2)
    assert max(len(pack) for pack in limited) == 2 and all(sum(lengths[i] for i in p) <= 8 for p in limited)
    assert first_fit_decreasing([9, 2], capacity=4) == [[0], [1]]  # a row longer than the capacity packs alone


def test_packed_rows_carry_restarting_positions_and_no_label_across_rows():
    rows = [{"input_ids": [11, 12, 13], "labels": [-100, 12, 13]}, {"input_ids": [21, 22], "labels": [21, 22]}]
    batch = PackingCollator(PAD_ID)([[rows[0], rows[1]], [rows[1]]])
    assert batch["input_ids"].tolist() == [[11, 12, 13, 21, 22], [21, 22, PAD_ID, PAD_ID, PAD_ID]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert batch["labels"].tolist() == [[-100, 12, 13, -100, 22], [-100, 22, -100, -100, -100]]
    assert "attention_mask" not in batch


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_logits_and_losses_equal_the_unpacked_rows(attention, tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attention).eval()
    rows = synthetic_rows(7, vary=True, seed=3)
    lengths = [len(row["input_ids"]) for row in rows]
    packs = first_fit_decreasing(lengths, capacity=40)
    assert any(len(pack) > 1 for pack in packs)
    packed = PackingCollator(PAD_ID)([[rows[i] for i in pack] for pack in packs])
    with torch.no_grad():
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
        packed_loss = model(**packed, num_items_in_batch=1, use_cache=False).loss  # summed over every scored token
        plain = PaddingCollator(PAD_ID)(rows)
        plain_logits = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits
        plain_loss = model(**plain, num_items_in_batch=1).loss
    for slot, pack in enumerate(packs):
        start = 0
        for i in pack:
            torch.testing.assert_close(packed_logits[slot, start : start + lengths[i]], plain_logits[i, : lengths[i]], rtol=0, atol=1e-4)
            row_alone = {k: torch.tensor([rows[i][k]]) for k in ("input_ids", "labels")}
            with torch.no_grad():
                alone = model(**row_alone).loss
            shifted = packed["labels"][slot, start + 1 : start + lengths[i]]
            row_loss = torch.nn.functional.cross_entropy(packed_logits[slot, start : start + lengths[i] - 1], shifted, ignore_index=-100)
            torch.testing.assert_close(row_loss, alone, rtol=0, atol=1e-4)
            start += lengths[i]
    torch.testing.assert_close(packed_loss, plain_loss, rtol=1e-5, atol=1e-4)


def test_training_with_packing_takes_the_same_steps(tiny_model_dir, tmp_path):
    """Rows of five lengths, batch 4 x 2 accumulation: the packed run logs the same losses and ends with the
    same weights as the unpacked one (SGD, as in the accumulation test)."""
    rows = synthetic_rows(32, vary=True)
    common = {"max_steps": 2, "checkpoint_steps": 2, "group_by_length": False, "learning_rate": 0.5,
              "optimizer": {"type": "sgd"}, "batch_size": 4, "gradient_accumulation_steps": 2}
    plain = run(tiny_config(tiny_model_dir, trainer=common), tiny_model_dir, tmp_path / "plain", rows)
    packed_config = tiny_config(tiny_model_dir, trainer={**common, "packing": True, "packing_max_sequences_per_pack": 3},
                                preprocessing={"global_max_sequence_length": 40})
    packed = run(packed_config, tiny_model_dir, tmp_path / "packed", rows)
    for a, b in zip(plain["steps"], packed["steps"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
    assert_same_weights(checkpoint_weights(tmp_path / "plain", 2), checkpoint_weights(tmp_path / "packed", 2), atol=1e-5)


def test_packing_refuses_adapters_with_virtual_tokens(tiny_model_dir):
    config = tiny_config(tiny_model_dir, adapter={"_replace": True, "type": "prompt_tuning", "num_virtual_tokens": 4},
                         trainer={"packing": True})
    with pytest.raises(UserError, match="trainer.packing"):
        load_config(config)


def test_packing_is_refused_for_preference_trainers(tiny_model_dir):
    config = tiny_config(tiny_model_dir, trainer={"_replace": True, "type": "dpo", "packing": True, "batch_size": 4})
    with pytest.raises(UserError, match="trainer.packing: the 'dpo' trainer scores each row's responses"):
        load_config(config)


def test_workers_share_the_same_packs_without_overlap(tiny_model_dir):
    """Every worker packs the whole micro-batch the same way and takes its own packs: together they train on
    each row once; a worker left without a pack gets a (zero-weighted) one so every worker runs a pass."""
    from types import SimpleNamespace

    from ludwig_llm.trainers.finetune import FineTuneRecipe

    rows = synthetic_rows(6, vary=True)
    config = load_config(tiny_config(tiny_model_dir, trainer={"packing": True}, preprocessing={"global_max_sequence_length": 30}))

    def inputs(rank: int, world_size: int, batch):
        recipe = FineTuneRecipe.__new__(FineTuneRecipe)
        recipe.job, recipe.config, recipe.trainer = SimpleNamespace(train_rows=rows), config, config.trainer
        recipe.session, recipe.device = SimpleNamespace(rank=rank, world_size=world_size), torch.device("cpu")
        recipe.lengths, recipe.collate_packs = [len(row["input_ids"]) for row in rows], PackingCollator(PAD_ID)
        return recipe._micro_batch_inputs(batch)

    shares = [inputs(rank, 2, list(range(6))) for rank in (0, 1)]
    assert all(has_rows for _, has_rows in shares)
    scored = sum(int((tensors["labels"] != -100).sum()) for tensors, _ in shares)
    assert scored == sum(sum(label != -100 for label in row["labels"][1:]) for row in rows)
    assert all(tensors["use_cache"] is False for tensors, _ in shares)
    lonely, has_rows = inputs(5, 6, [0, 1])  # two rows fit one pack: the sixth worker has none of its own
    assert not has_rows and lonely["input_ids"].shape[0] == 1


def test_packed_chat_rows_give_the_losses_of_the_rows_alone(tiny_model_dir):
    """Rows of the `chat` input feature (several assistant turns, loss on each) packed together: each row's
    loss over its own label positions equals that row run alone, in fp32 to 1e-4."""
    import pandas as pd
    from transformers import AutoTokenizer

    from ludwig_llm.data.chat import ChatFormat

    config = load_config({"base_model": tiny_model_dir, "prompt": {"chat_template": "chatml"},
                          "input_features": [{"name": "messages", "type": "chat"}],
                          "output_features": [{"name": "reply", "type": "text"}]})
    conversations = []
    for n in range(6):
        turns = [{"role": "system", "content": "You answer briefly."}] if n % 2 else []
        for k in range(1 + n % 3):
            turns += [{"role": "user", "content": f"Question {k} about item {n}" + "?" * n},
                      {"role": "assistant", "content": f"Answer {k}" + " yes" * (n + k)}]
        conversations.append(turns)
    fmt = ChatFormat(config, AutoTokenizer.from_pretrained(tiny_model_dir))
    rows = fmt.encode_for_training(pd.DataFrame({"messages": conversations})).examples
    assert len(rows) == 6 and all(sum(label != -100 for label in row["labels"]) > 0 for row in rows)
    lengths = [len(row["input_ids"]) for row in rows]
    packs = first_fit_decreasing(lengths, capacity=max(lengths) + min(lengths) + 8)
    assert any(len(pack) > 1 for pack in packs)
    packed = PackingCollator(PAD_ID)([[rows[i] for i in pack] for pack in packs])

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
        for slot, pack in enumerate(packs):
            start = 0
            for i in pack:
                alone = model(input_ids=torch.tensor([rows[i]["input_ids"]]), labels=torch.tensor([rows[i]["labels"]])).loss
                targets = packed["labels"][slot, start + 1 : start + lengths[i]]
                assert targets.tolist() == rows[i]["labels"][1:]  # labels stay with their row, none crosses into the next
                row_loss = torch.nn.functional.cross_entropy(logits[slot, start : start + lengths[i] - 1], targets, ignore_index=-100)
                torch.testing.assert_close(row_loss, alone, rtol=0, atol=1e-4)
                start += lengths[i]
