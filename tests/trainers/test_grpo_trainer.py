"""grpo on the tiny model through LudwigLLM.train: online sampling with registered and API rewards, its statistics
and validation reward; configs and data the trainer cannot use are refused naming the key, column or row."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from ludwig_llm.api import LudwigLLM
from ludwig_llm.errors import ConfigValidationError, UserError
from ludwig_llm.results import MODEL_DIR
from ludwig_llm.schema import load_config
from ludwig_llm.schema.registry import trainer_registry
from tests.conftest import record_rows

MINIMAL = {"model_type": "llm", "base_model": "unused", "input_features": [{"name": "p", "type": "text"}],
           "output_features": [{"name": "c", "type": "text"}]}


def grpo_trainer(**changes):
    return {"_replace": True, "type": "grpo", "max_steps": 3, "batch_size": 4, "learning_rate": 0.005, "logging_steps": 1,
            "grpo_num_generations": 4, "rollout": {"max_new_tokens": 6}, **changes}


def test_grpo_is_registered_with_ludwigs_keys_and_defaults():
    grpo = trainer_registry.get("grpo")
    fields = {f.name: f.default for f in grpo.__dataclass_fields__.values()}
    assert {"grpo_beta": 0.04, "grpo_epsilon": 0.2, "grpo_num_generations": 4, "validation_metric": "reward"}.items() <= fields.items()
    assert load_config({**MINIMAL, "trainer": {"type": "grpo", "beta": 0.1}}).trainer.grpo_beta == 0.1


def test_grpo_samples_scores_and_reports_rewards(make_config, tmp_path):
    def short(completions, rows):  # an API reward function; its name names its statistic
        return [-len(c) / 20 for c in completions]

    config = make_config(trainer=grpo_trainer(max_steps=8, eval_steps=4, rewards=[{"type": "regex", "pattern": r"\d", "full_match": False},
                                                                                   {"type": "exact_match", "weight": 2.0}]))
    results = LudwigLLM(config).train(dataset=pd.DataFrame(record_rows(40)), output_directory=str(tmp_path / "results"), rewards=[short])
    steps = results.training_statistics["steps"]
    print("grpo steps (reward, kl):", [(round(s["reward"], 3), round(s["kl"], 5)) for s in steps])
    keys = {"loss", "reward", "reward_regex", "reward_exact_match", "reward_short", "kl", "clip_ratio", "completion_length"}
    assert len(steps) == 8 and all(keys <= set(step) for step in steps)
    for step in steps:  # the total is the weighted sum of the rewards
        assert step["reward"] == pytest.approx(step["reward_regex"] + 2 * step["reward_exact_match"] + step["reward_short"], abs=1e-5)
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert steps[-1]["kl"] > 0  # the policy moved away from it (that rewards rise is shown on SmolLM2: test_grpo_smollm2.py)
    assert all(0 < s["completion_length"] <= 6 for s in steps) and all(0 <= s["clip_ratio"] <= 1 for s in steps)
    validation = [e["validation"] for e in results.training_statistics["evaluations"]]
    assert len(validation) == 2 and {"reward", "reward_regex", "reward_exact_match", "reward_short"} <= set(validation[0])
    assert results.training_statistics["best"]["metric"] == "reward"
    assert os.path.isfile(os.path.join(results.run_directory, MODEL_DIR, "adapter_model.safetensors"))


def test_grpo_without_an_adapter_uses_a_frozen_reference_copy(make_config, tmp_path):
    config = make_config(trainer=grpo_trainer(max_steps=3, learning_rate=1e-3))
    config["adapter"] = None
    results = LudwigLLM(config).train(dataset=pd.DataFrame(record_rows(20)), output_directory=str(tmp_path / "results"),
                                      rewards=[lambda completions, rows: [len(c) / 20 for c in completions]])
    steps = results.training_statistics["steps"]
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-6) and steps[-1]["kl"] > 0


@pytest.mark.parametrize("rewards, functions, dataset_change, message", [
    ([], [], None, "trainer.rewards: the grpo trainer needs at least one reward"),
    ([{"type": "exact_match", "column": "answer"}], [], None, "trainer.rewards[0] (exact_match) compares against column 'answer', which the training split does not have"),
    (["numeric_answer"], [], lambda df: df.assign(record=df["record"].where(df.index != 1, "none")),
     "trainer.rewards[0] (numeric_answer): the reference in column 'record' has no number in training row 1"),
    (["exact_match"], [], lambda df: df.assign(record=df["record"].where(df.index != 2, " ")), "column 'record' is empty in training row 2"),
    ([], [lambda completions, rows: [1.0]], None, "returned 1 scores for 16 completions"),
])
def test_bad_rewards_are_refused_naming_the_key_column_or_row(make_config, tmp_path, rewards, functions, dataset_change, message):
    config = make_config(trainer=grpo_trainer(max_steps=1, rewards=rewards), preprocessing={"split": {"type": "fixed"}})
    dataset = pd.DataFrame(record_rows(8)).assign(split=0)
    if dataset_change is not None:
        dataset = dataset_change(dataset)
    with pytest.raises(UserError) as error:
        LudwigLLM(config).train(dataset=dataset, output_directory=str(tmp_path / "results"), rewards=functions)
    assert message in str(error.value)


def test_reward_functions_are_for_grpo_only(make_config, tmp_path):
    with pytest.raises(UserError, match="rewards= is for trainer type 'grpo'"):
        LudwigLLM(make_config()).train(dataset=pd.DataFrame(record_rows(8)), rewards=[lambda c, r: [0.0] * len(c)])


@pytest.mark.parametrize("trainer, path", [
    ({"type": "grpo", "rewards": [{"type": "regex", "pattern": "(unclosed"}]}, "trainer.rewards[0].pattern"),
    ({"type": "grpo", "rewards": ["exact_mach"]}, "trainer.rewards[0].type"),
    ({"type": "grpo", "rewards": [{"type": "numeric_answer", "tolerance": -1}]}, "trainer.rewards[0].tolerance"),
    ({"type": "grpo", "grpo_num_generations": 1}, "trainer.grpo_num_generations"),
    ({"type": "grpo", "packing": True}, "trainer.packing"),
])
def test_bad_grpo_configs_are_refused_at_check_time(trainer, path):
    with pytest.raises(ConfigValidationError) as error:
        load_config({**MINIMAL, "trainer": trainer})
    assert [issue.path for issue in error.value.issues] == [path]


def test_completion_log_probs_from_the_rollout_layout_equal_those_of_plain_sequences(tiny_model_dir):
    """The update reads generate's layout (left-padded prompts, positions counting real tokens, logits kept only where
    they predict completion tokens); each completion token's log-probability is the one of the plain sequence."""
    import torch
    from transformers import AutoModelForCausalLM

    from ludwig_llm.data.tokenize import IGNORE_INDEX
    from ludwig_llm.trainers.grpo import Rollout
    from ludwig_llm.trainers.preference_losses import token_log_probs

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompts, completions, pad = [[1, 40, 41, 42, 43], [1, 50]], [[60, 61, 2], [70]], 3
    width, length = max(map(len, prompts)), max(map(len, completions))
    input_ids = torch.full((2, width + length), pad)
    attention_mask = torch.zeros_like(input_ids)
    labels = torch.full((2, length), IGNORE_INDEX)
    for i, (prompt, completion) in enumerate(zip(prompts, completions)):
        input_ids[i, width - len(prompt):width + len(completion)] = torch.tensor(prompt + completion)
        attention_mask[i, width - len(prompt):width + len(completion)] = 1
        labels[i, :len(completion)] = torch.tensor(completion)
    rollout = Rollout(input_ids, attention_mask, labels, torch.zeros(2), {})
    with torch.no_grad():
        logits = model(**rollout.inputs("cpu")).logits
    kept, mask = token_log_probs(logits, torch.cat([torch.full((2, 1), IGNORE_INDEX), labels], dim=1))
    assert logits.shape[1] == length + 1
    for i, (prompt, completion) in enumerate(zip(prompts, completions)):
        with torch.no_grad():
            plain_logits = model(input_ids=torch.tensor([prompt + completion])).logits
        plain, _ = token_log_probs(plain_logits, torch.tensor([[IGNORE_INDEX] * len(prompt) + completion]))
        expected = plain[0, len(prompt) - 1:]
        assert mask[i].sum().item() == len(completion)
        assert torch.allclose(kept[i, :len(completion)], expected, atol=1e-5), (kept[i], expected)


def test_grpo_resumes_exactly_where_it_stopped(tiny_model_dir, tmp_path, monkeypatch):
    """The checkpoint restores the random generators, so the resumed run samples the same completions."""
    import torch

    from ludwig_llm.results import latest_checkpoint_in
    from ludwig_llm.trainers.grpo import GRPOJob, run_grpo
    from ludwig_llm.trainers.session import LocalSession
    from tests.conftest import tiny_config
    from tests.trainers.test_trainer_loop import PAD_ID, Interrupted, assert_same_weights, checkpoint_weights, interrupt_after_checkpoint

    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": [1] + torch.randint(10, 300, (4 + i % 3,), generator=generator).tolist(), "row": {"record": "x"}}
            for i in range(12)]
    rows = [{**row, "labels": [-100] * len(row["input_ids"])} for row in rows]
    config = load_config(tiny_config(tiny_model_dir, adapter={"dropout": 0.1}, trainer=grpo_trainer(
        max_steps=4, checkpoint_steps=2, checkpoints_to_keep=4, eval_steps=2)))

    def run(run_dir, resume_from=None):
        os.makedirs(run_dir, exist_ok=True)
        job = GRPOJob(config_dict=config.to_dict(), base_model_path=tiny_model_dir, train_rows=rows, validation_rows=rows[:3],
                      pad_token_id=PAD_ID, save_model=False, reward_functions=[lambda completions, _: [len(c) / 10 for c in completions]])
        return run_grpo(job, LocalSession(str(run_dir), 4, resume_from))

    straight = run(tmp_path / "straight")
    with monkeypatch.context() as patch:
        interrupt_after_checkpoint(patch, 2)
        with pytest.raises(Interrupted):
            run(tmp_path / "resumed")
    resumed = run(tmp_path / "resumed", resume_from=latest_checkpoint_in(str(tmp_path / "resumed")))
    assert resumed["steps"] == straight["steps"] and resumed["evaluations"] == straight["evaluations"]
    assert_same_weights(checkpoint_weights(tmp_path / "straight", 4), checkpoint_weights(tmp_path / "resumed", 4))


def test_grpo_samples_the_next_assistant_turn_of_a_conversation(make_config, tmp_path, tiny_model_dir):
    """With a chat input the prompt is the conversation rendered up to the next assistant turn; the rewards see the
    completions and the rows, whose reference column is the output feature's."""
    import json

    from transformers import AutoTokenizer

    from ludwig_llm.trainers.grpo_launch import prompt_rows

    seen = []

    def record(completions, rows):
        seen.extend(rows)
        return [float(len(c) < 10) for c in completions]

    table = pd.DataFrame(record_rows(12))
    table["messages"] = [json.dumps([{"role": "user", "content": s}]) for s in table["sentence"]]
    config = make_config(trainer=grpo_trainer(max_steps=2, rewards=["exact_match"]))
    config["input_features"] = [{"name": "messages", "type": "chat"}]
    config.pop("prompt")
    rows = prompt_rows(table, "training", AutoTokenizer.from_pretrained(tiny_model_dir), load_config(config))
    prompt = AutoTokenizer.from_pretrained(tiny_model_dir).decode(rows[0]["input_ids"])
    assert prompt.endswith("<|assistant|>\n") and table["sentence"][0] in prompt and table["record"][0] not in prompt
    results = LudwigLLM(config).train(dataset=table.drop(columns=["sentence"]), output_directory=str(tmp_path / "results"), rewards=[record])
    steps = results.training_statistics["steps"]
    assert len(steps) == 2 and {"reward_exact_match", "reward_record"} <= set(steps[0])
    assert seen and all("messages" in row and "record" in row for row in seen)
