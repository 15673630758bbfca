"""LudwigLLM(config).train/experiment on the tiny model: run directories, the saved model/ and how plain
peft/transformers load it, merging, continuing a saved adapter, trainer none, and bad-input errors."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
import torch
import yaml

from ludwig_llm.api import LudwigLLM
from ludwig_llm.errors import UserError
from ludwig_llm.results import DESCRIPTION, MODEL_DIR, TRAINING_STATISTICS
from tests.conftest import capture_in_memory_generations, greedy_tokens as greedy, prompt_logits as _logits

PROMPTS = ["Sentence: Alice moved to Paris in 1999.\nRecord:", "Sentence: In 2004, Hugo relocated to Lima.\nRecord:"]


def train(config, dataset, tmp_path, **kwargs):
    return LudwigLLM(config).train(dataset=dataset, output_directory=str(tmp_path / "results"), **kwargs)


def snapshot(directory) -> dict:
    """(size, mtime) of every file under ``directory``, to show that nothing was rewritten."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, directory)] = (os.path.getsize(path), os.stat(path).st_mtime_ns)
    return found


# ------------------------------------------------------------------ run directories


def test_each_run_gets_a_new_directory_and_never_overwrites_an_earlier_one(make_config, small_dataset, tmp_path):
    config = make_config(trainer={"max_steps": 1})
    first = train(config, small_dataset, tmp_path, experiment_name="exp", model_name="tiny")
    before = snapshot(first.run_directory)
    second = train(config, small_dataset, tmp_path, experiment_name="exp", model_name="tiny")
    third = train(config, small_dataset, tmp_path, experiment_name="exp", model_name="tiny", skip_save_model=True)
    results = tmp_path / "results"
    assert [first.run_directory, second.run_directory, third.run_directory] == [
        str(results / "exp_tiny"), str(results / "exp_tiny_1"), str(results / "exp_tiny_2")]
    assert snapshot(first.run_directory) == before

    assert {"config.yaml", MODEL_DIR, TRAINING_STATISTICS, DESCRIPTION} <= set(os.listdir(first.run_directory))
    model_files = set(os.listdir(os.path.join(first.run_directory, MODEL_DIR)))
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "ludwig_llm_config.yaml", "ludwig_llm_model.json"} <= model_files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in model_files)
    # --skip_save_model: statistics but no model
    assert MODEL_DIR not in os.listdir(third.run_directory)
    assert json.load(open(os.path.join(third.run_directory, TRAINING_STATISTICS)))["total_steps"] == 1


def test_statistics_description_and_saved_config(make_config, small_dataset, tmp_path):
    config = make_config(trainer={"max_steps": 3, "eval_steps": 2})
    result = train(config, small_dataset, tmp_path, random_seed=7)
    statistics = json.load(open(os.path.join(result.run_directory, TRAINING_STATISTICS)))
    assert statistics["total_steps"] == 3 and [s["step"] for s in statistics["steps"]] == [1, 2, 3]
    assert [e["step"] for e in statistics["evaluations"]] == [2]
    assert statistics["preprocessing"]["train"]["rows"] == 32
    description = json.load(open(os.path.join(result.run_directory, DESCRIPTION)))
    assert description["seed"] == 7 and description["config"]["trainer"]["seed"] == 7
    assert {"preprocessing", "training"} <= set(description["timings_seconds"])
    assert description["packages"]["torch"] and description["packages"]["peft"]
    run_config = yaml.safe_load(open(os.path.join(result.run_directory, "config.yaml")))
    model_config = yaml.safe_load(open(os.path.join(result.run_directory, MODEL_DIR, "ludwig_llm_config.yaml")))
    assert run_config == model_config == description["config"]
    assert run_config["trainer"]["seed"] == 7 and run_config["adapter"]["type"] == "lora"


def test_experiment_evaluates_the_test_split(make_config, small_dataset, tmp_path):
    result = LudwigLLM(make_config(trainer={"max_steps": 1})).experiment(dataset=small_dataset,
                                                                       output_directory=str(tmp_path))
    assert result.test_statistics["record"]["rows"] == 4
    assert {"loss", "exact_match", "bleu"} <= set(result.test_statistics["record"])
    files = set(os.listdir(result.run_directory))
    assert {"test_statistics.json", "predictions.parquet", "predictions.csv"} <= files


# ------------------------------------------------------------------ the saved model, loaded with plain peft/transformers


def test_saved_adapter_loaded_with_peft_generates_like_the_in_memory_model(make_config, small_dataset, tmp_path,
                                                                           monkeypatch):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    captured = capture_in_memory_generations(monkeypatch, PROMPTS)
    config = make_config(trainer={"max_steps": 8, "learning_rate": 0.02})
    result = train(config, small_dataset, tmp_path)
    model_dir = os.path.join(result.run_directory, MODEL_DIR)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    peft_model = AutoPeftModelForCausalLM.from_pretrained(model_dir)
    assert greedy(peft_model, tokenizer, PROMPTS) == captured["tokens"]
    logits = _logits(peft_model, tokenizer, PROMPTS[0])
    torch.testing.assert_close(logits, captured["logits"], rtol=1e-4, atol=1e-5)
    # the adapter is really there: the base model alone answers differently
    base = AutoModelForCausalLM.from_pretrained(config["base_model"])
    assert not torch.allclose(_logits(base, tokenizer, PROMPTS[0]), logits, atol=1e-4)

    # and ludwig_llm's own predict returns the same text
    rows = pd.DataFrame({"sentence": ["Alice moved to Paris in 1999.", "In 2004, Hugo relocated to Lima."]})
    predicted = LudwigLLM.load(model_dir).predict(rows, output_directory=None).predictions["record_response"].tolist()
    expected = [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in
                (t[: t.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in t else t for t in captured["tokens"])]
    assert predicted == expected


def test_merged_model_loads_with_plain_transformers(make_config, small_dataset, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    captured = capture_in_memory_generations(monkeypatch, PROMPTS)
    config = make_config(adapter={"postprocessor": {"merge_adapter_into_base_model": True}},
                         trainer={"max_steps": 6, "learning_rate": 0.02})
    result = train(config, small_dataset, tmp_path)
    merged_dir = os.path.join(result.run_directory, MODEL_DIR, "merged")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(merged_dir))
    assert json.load(open(os.path.join(result.run_directory, MODEL_DIR, "ludwig_llm_model.json")))["merged"] is True
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    torch.testing.assert_close(_logits(merged, tokenizer, PROMPTS[0]), captured["logits"], rtol=1e-4, atol=1e-4)
    assert greedy(merged, tokenizer, PROMPTS) == captured["tokens"]


def test_pretrained_adapter_weights_continue_training(make_config, small_dataset, tmp_path):
    from safetensors.torch import load_file

    first = train(make_config(trainer={"max_steps": 10, "learning_rate": 0.02}), small_dataset, tmp_path)
    saved = os.path.join(first.run_directory, MODEL_DIR)
    config = make_config(adapter={"pretrained_adapter_weights": saved}, trainer={"max_steps": 3, "learning_rate": 0.02})
    second = train(config, small_dataset, tmp_path)
    first_losses = [s["loss"] for s in first.training_statistics["steps"]]
    second_losses = [s["loss"] for s in second.training_statistics["steps"]]
    # Same seed and data, so both runs' first step sees the same batch: the second run starts from the
    # trained adapter (most of the first run's improvement is already there), not from the base model.
    learned = first_losses[0] - min(first_losses)
    assert learned > 0.2
    assert second_losses[0] < first_losses[0] - 0.5 * learned
    before = load_file(os.path.join(saved, "adapter_model.safetensors"))
    after = load_file(os.path.join(second.run_directory, MODEL_DIR, "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def test_trainer_none_saves_a_reference_to_the_base_model(make_config, small_dataset, tmp_path):
    config = make_config(trainer={"type": "none", "_replace": True}, adapter=None)
    result = train(config, small_dataset, tmp_path)
    model_dir = os.path.join(result.run_directory, MODEL_DIR)
    manifest = json.load(open(os.path.join(model_dir, "ludwig_llm_model.json")))
    assert manifest["weights"] == "base" and not any(n.endswith(".safetensors") for n in os.listdir(model_dir))
    assert result.test_statistics["record"]["rows"] == 4  # trainer none evaluates the test split


# ------------------------------------------------------------------ bad input


def _remote_code_model(tiny_model_dir, tmp_path) -> str:
    path = tmp_path / "remote_code_model"
    shutil.copytree(tiny_model_dir, path)
    config = json.load(open(path / "config.json"))
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomModel"}
    json.dump(config, open(path / "config.json", "w"))
    return str(path)


def bad_inputs(tmp_path, small_dataset, tiny_model_dir):
    """(config changes, dataset, words the error must contain) of each kind of bad input."""
    header_only = tmp_path / "empty.csv"
    header_only.write_text("sentence,record\n")
    garbage = tmp_path / "broken.parquet"
    garbage.write_bytes(b"this is not parquet")
    return {
        "missing output column": ({}, small_dataset.drop(columns=["record"]), ["'record'"]),
        "missing input column": ({}, small_dataset.rename(columns={"sentence": "text"}), ["'sentence'"]),
        "empty dataset": ({}, str(header_only), [str(header_only), "empty"]),
        "missing file": ({}, str(tmp_path / "nowhere.csv"), [str(tmp_path / "nowhere.csv"), "not found"]),
        "unreadable file": ({}, str(garbage), [str(garbage), "unreadable"]),
        "template names an absent column": (
            {"prompt": {"template": "Context: {background}\nSentence: {__sample__}\nRecord:"}}, small_dataset,
            ["'background'", "prompt.template"]),
        "model needs remote code": (
            {"base_model": _remote_code_model(tiny_model_dir, tmp_path)}, small_dataset,
            ["remote_code_model", "trust_remote_code"]),
    }


BAD_INPUT_CASES = ["missing output column", "missing input column", "empty dataset", "missing file", "unreadable file",
                   "template names an absent column", "model needs remote code"]


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_bad_input_is_a_user_error_naming_the_column_or_path(case, make_config, small_dataset, tiny_model_dir, tmp_path):
    changes, dataset, words = bad_inputs(tmp_path, small_dataset, tiny_model_dir)[case]
    with pytest.raises(UserError) as error:
        train(make_config(**changes), dataset, tmp_path)
    message = str(error.value)
    for word in words:
        assert word in message, message
    assert "\n" not in message


def test_resume_of_a_directory_that_is_not_a_run(make_config, small_dataset, tmp_path):
    with pytest.raises(UserError, match="not a ludwig_llm run directory"):
        train(make_config(), small_dataset, tmp_path, resume=str(tmp_path))
    with pytest.raises(UserError, match="no earlier run"):
        train(make_config(), small_dataset, tmp_path, resume="latest", experiment_name="never")
