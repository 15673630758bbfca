"""dpo, orpo and kto on the tiny model through LudwigLLM.train: statistics, learning, the reference model,
precomputed reference log-probabilities, and bad preference data refused with the row or key named."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from ludwig_llm.api import LudwigLLM
from ludwig_llm.errors import UserError
from ludwig_llm.results import MODEL_DIR, TRAINING_STATISTICS
from ludwig_llm.schema import load_config
from ludwig_llm.schema.registry import trainer_registry
from ludwig_llm.trainers.preference_data import check_preference_table
from tests.conftest import record_rows

STEP_KEYS = {"loss", "chosen_reward", "rejected_reward", "reward_margin", "reward_accuracy"}


def preference_table(count: int = 40) -> pd.DataFrame:
    """The record task; the rejected response is the record in a style the chosen never uses."""
    rows = record_rows(count)
    for row in rows:
        row["rejected"] = "RECORD: " + row["record"].upper().replace(" | ", "; ")
        row["label"] = len(row["sentence"]) % 2 == 0
    return pd.DataFrame(rows)


def train(config, tmp_path, dataset=None):
    model = LudwigLLM(config)
    results = model.train(dataset=preference_table() if dataset is None else dataset, output_directory=str(tmp_path / "results"))
    statistics = json.load(open(os.path.join(results.run_directory, TRAINING_STATISTICS)))
    return results, statistics


def test_preference_types_are_registered_with_ludwigs_keys_and_defaults():
    dpo, orpo, kto = (trainer_registry.get(name) for name in ("dpo", "orpo", "kto"))
    fields = lambda cls: {f.name: f.default for f in cls.__dataclass_fields__.values()}  # noqa: E731
    assert {"dpo_beta": 0.1, "dpo_loss_type": "sigmoid", "dpo_label_smoothing": 0.0, "rejected_column": "rejected",
            "precompute_ref_log_probs": False}.items() <= fields(dpo).items()
    assert {"orpo_beta": 0.1, "rejected_column": "rejected"}.items() <= fields(orpo).items()
    assert {"kto_beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0, "label_column": "label"}.items() <= fields(kto).items()
    assert "precompute_ref_log_probs" not in fields(orpo)  # orpo has no reference model


def test_dpo_learns_the_chosen_style_on_training_rows(make_config, tmp_path):
    config = make_config(trainer={"_replace": True, "type": "dpo", "max_steps": 8, "batch_size": 8, "learning_rate": 0.005,
                                  "logging_steps": 1, "eval_steps": 4, "validation_metric": "reward_accuracy"})
    results, statistics = train(config, tmp_path)
    steps = statistics["steps"]
    print("dpo steps (reward_accuracy, reward_margin):", [(round(s["reward_accuracy"], 2), round(s["reward_margin"], 3)) for s in steps])
    assert len(steps) == 8 and all(STEP_KEYS <= set(step) for step in steps)
    assert steps[0]["reward_margin"] == pytest.approx(0.0, abs=1e-4)  # the policy starts as the reference
    assert steps[-1]["reward_accuracy"] > 0.5
    assert steps[-1]["reward_margin"] > steps[0]["reward_margin"] + 0.05
    assert steps[-1]["loss"] < steps[0]["loss"]
    validation = [e["validation"] for e in statistics["evaluations"]]
    assert len(validation) == 2 and STEP_KEYS <= set(validation[0])
    assert statistics["best"]["metric"] == "reward_accuracy"
    assert os.path.isfile(os.path.join(results.run_directory, MODEL_DIR, "adapter_model.safetensors"))
    LudwigLLM.load(os.path.join(results.run_directory, MODEL_DIR)).predict(preference_table(2)[["sentence"]])


def test_precomputed_reference_log_probs_give_the_same_run(make_config, tmp_path):
    trainer = {"_replace": True, "type": "dpo", "max_steps": 2, "batch_size": 8, "learning_rate": 0.005, "logging_steps": 1}
    _, live = train(make_config(trainer=trainer), tmp_path / "live")
    _, cached = train(make_config(trainer={**trainer, "precompute_ref_log_probs": True}), tmp_path / "cached")
    for a, b in zip(live["steps"], cached["steps"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["reward_margin"] == pytest.approx(b["reward_margin"], abs=1e-4)


def test_dpo_without_an_adapter_uses_a_frozen_reference_copy(make_config, tmp_path):
    config = make_config(trainer={"_replace": True, "type": "dpo", "dpo_loss_type": "ipo", "max_steps": 3, "batch_size": 8,
                                  "learning_rate": 1e-3, "logging_steps": 1})
    config["adapter"] = None
    _, statistics = train(config, tmp_path)
    steps = statistics["steps"]
    assert steps[0]["reward_margin"] == pytest.approx(0.0, abs=1e-4)
    assert steps[-1]["reward_margin"] > steps[0]["reward_margin"]


@pytest.mark.parametrize("trainer", [{"type": "orpo"}, {"type": "kto", "desirable_weight": 1.5}])
def test_orpo_and_kto_train_and_report_preference_statistics(make_config, tmp_path, trainer):
    config = make_config(trainer={"_replace": True, **trainer, "max_steps": 6, "batch_size": 8, "learning_rate": 0.005,
                                  "logging_steps": 1, "eval_steps": 3})
    _, statistics = train(config, tmp_path)
    steps = statistics["steps"]
    assert all(STEP_KEYS <= set(step) for step in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert STEP_KEYS <= set(statistics["evaluations"][-1]["validation"])


# ------------------------------------------------------------------ bad preference data


def config_for(trainer_type: str):
    return load_config({"model_type": "llm", "base_model": "unused", "input_features": [{"name": "sentence", "type": "text"}],
                        "output_features": [{"name": "record", "type": "text"}], "trainer": {"type": trainer_type}})


@pytest.mark.parametrize("trainer_type, change, message", [
    ("dpo", lambda df: df.drop(columns=["rejected"]), "has no column 'rejected' (trainer.rejected_column"),
    ("orpo", lambda df: df.assign(rejected=df["rejected"].where(df.index != 3, df["record"] + " ")), "identical in row(s) 3;"),
    ("dpo", lambda df: df.assign(rejected=df["rejected"].where(df.index != 1, "  ")), "rejected response in column 'rejected' (trainer.rejected_column) is empty in row(s) 1"),
    ("dpo", lambda df: df.assign(record=df["record"].where(df.index != 4, "")), "column 'record' (the output feature) is empty in row(s) 4"),
    ("kto", lambda df: df.assign(label=["yes"] + list(df["label"][1:])), "must be boolean (true or false), got 'yes' in row(s) 0"),
    ("kto", lambda df: df.drop(columns=["label"]), "has no column 'label' (trainer.label_column"),
])
def test_bad_preference_rows_are_refused_naming_the_row_or_key(trainer_type, change, message):
    with pytest.raises(UserError) as error:
        check_preference_table(change(preference_table(6)), "training", config_for(trainer_type))
    assert message in str(error.value)


def test_a_missing_rejected_column_stops_train_before_the_model_trains(make_config, tmp_path):
    config = make_config(trainer={"_replace": True, "type": "dpo", "max_steps": 1})
    with pytest.raises(UserError, match="training split has no column 'rejected'"):
        train(config, tmp_path, dataset=preference_table().drop(columns=["rejected"]))


@pytest.mark.parametrize("name, data", [("dpo", "data.csv"), ("orpo", "data.csv"), ("kto", "kto.csv")])
def test_the_preference_examples_train_on_their_data(tiny_model_dir, tmp_path, name, data):
    import yaml

    examples = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "preference")
    config = yaml.safe_load(open(os.path.join(examples, f"config_{name}.yaml")))
    config["base_model"] = tiny_model_dir
    config["adapter"]["target_modules"] = ["q_proj", "v_proj"]
    config["trainer"].update(max_steps=2, eval_steps=1)
    _, statistics = train(config, tmp_path, dataset=os.path.join(examples, data))
    assert statistics["total_steps"] == 2 and STEP_KEYS <= set(statistics["evaluations"][0]["validation"])


@pytest.mark.parametrize("sections, path", [
    # without an adapter, kto's frozen reference copy would not be sharded by deepspeed (fsdp shards it)
    ({"backend": {"type": "ray", "trainer": {"strategy": {"type": "deepspeed"}}}}, "backend.trainer.strategy.type"),
    ({"quantization": {"bits": 4}}, "quantization"),
])
def test_preference_configs_the_loop_cannot_run_are_refused_at_check_time(sections, path):
    from ludwig_llm.errors import ConfigValidationError

    data = {"model_type": "llm", "base_model": "unused", "input_features": [{"name": "p", "type": "text"}],
            "output_features": [{"name": "c", "type": "text"}], "trainer": {"type": "kto"}, **sections}
    with pytest.raises(ConfigValidationError) as error:
        load_config(data)
    assert [issue.path for issue in error.value.issues] == [path]


def test_ludwigs_beta_is_read_as_the_trainers_beta():
    assert config_for("dpo").trainer.dpo_beta == 0.1
    data = {"model_type": "llm", "base_model": "unused", "input_features": [{"name": "p", "type": "text"}],
            "output_features": [{"name": "c", "type": "text"}]}
    assert load_config({**data, "trainer": {"type": "dpo", "beta": 0.3}}).trainer.dpo_beta == 0.3
    assert load_config({**data, "trainer": {"type": "kto", "beta": 0.2}}).trainer.kto_beta == 0.2


# ------------------------------------------------------------------ chat-form preference data


def chat_preference_table(count: int = 24) -> pd.DataFrame:
    """The record task as conversations: an earlier exchange, then the sentence; the responses are the last assistant turn."""
    table = preference_table(count)
    table["messages"] = [json.dumps([{"role": "user", "content": "Extract records."}, {"role": "assistant", "content": "Ready."},
                                     {"role": "user", "content": sentence}]) for sentence in table["sentence"]]
    return table.drop(columns=["sentence"])


def chat_config(make_config, trainer_type: str):
    config = make_config(trainer={"_replace": True, "type": trainer_type, "max_steps": 2, "batch_size": 4, "learning_rate": 0.005,
                                  "logging_steps": 1, "eval_steps": 2})
    config["input_features"] = [{"name": "messages", "type": "chat"}]
    config.pop("prompt")
    return config


def test_chat_preference_rows_share_the_conversation_and_label_only_the_final_turn(make_config, tiny_model_dir):
    from transformers import AutoTokenizer

    from ludwig_llm.data.tokenize import IGNORE_INDEX
    from ludwig_llm.trainers.preference_data import encode_preference_rows

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    table = chat_preference_table(3)
    rows = encode_preference_rows(table, "training", tokenizer, load_config(chat_config(make_config, "dpo")))
    for row, (_, cells) in zip(rows, table.iterrows()):
        chosen_prompt = row["labels"].index(next(label for label in row["labels"] if label != IGNORE_INDEX))
        rejected_prompt = row["rejected_labels"].index(next(label for label in row["rejected_labels"] if label != IGNORE_INDEX))
        assert chosen_prompt == rejected_prompt and row["input_ids"][:chosen_prompt] == row["rejected_input_ids"][:chosen_prompt]
        prompt_text = tokenizer.decode(row["input_ids"][:chosen_prompt])
        assert "Ready." in prompt_text and "<|assistant|>" in prompt_text  # the earlier turn is context, not labelled
        labelled = tokenizer.decode([label for label in row["labels"] if label != IGNORE_INDEX])
        assert labelled.startswith(cells["record"]) and "Ready." not in labelled
        assert tokenizer.decode([t for t in row["rejected_labels"] if t != IGNORE_INDEX]).startswith(cells["rejected"])


@pytest.mark.parametrize("trainer_type", ["dpo", "kto"])
def test_chat_preference_data_trains(make_config, tmp_path, trainer_type):
    _, statistics = train(chat_config(make_config, trainer_type), tmp_path, dataset=chat_preference_table())
    assert statistics["total_steps"] == 2 and all(STEP_KEYS <= set(step) for step in statistics["steps"])
    assert STEP_KEYS <= set(statistics["evaluations"][0]["validation"])
