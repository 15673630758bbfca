"""`ludwig_llm export`: merged weights that plain transformers loads and decodes exactly as `predict`,
the adapter copied as a peft adapter, a 4-bit QLoRA adapter merged into the de-quantized base with a
warning, and clear refusals (prompt-learning adapters, a non-empty output directory)."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ludwig_llm.api import LudwigLLM
from ludwig_llm.cli import main
from ludwig_llm.results import MODEL_DIR

TEMPLATE = "Sentence: {}\nRecord:"  # tests.conftest.tiny_config's prompt.template
SENTENCES = ["Hugo moved.", "In 2004, Grace relocated to Kyoto with her family.", "Oslo.", "Dana left Lima in 1999."]


def plain_transformers_answers(directory, sentences):
    """What a user gets from the exported directory alone: its generation_config decides the decoding."""
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    answers = []
    for sentence in sentences:
        ids = tokenizer(TEMPLATE.format(sentence), return_tensors="pt")
        with torch.no_grad():
            tokens = model.generate(**ids)[0, ids["input_ids"].shape[1]:].tolist()
        answers.append(tokenizer.decode(tokens, skip_special_tokens=True).strip())
    return model, answers


def test_merged_export_loads_in_plain_transformers_and_equals_predict(trained_model_dir, tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["export", "--model_path", trained_model_dir, "--output_directory", str(out)]) == 0
    assert f"exported: {out}" in capsys.readouterr().out
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= set(os.listdir(out))
    assert not {"adapter_config.json", "ludwig_llm_model.json"} & set(os.listdir(out))
    expected = LudwigLLM.load(trained_model_dir).predict(pd.DataFrame({"sentence": SENTENCES}), output_directory=None)
    model, answers = plain_transformers_answers(out, SENTENCES)
    assert answers == expected.predictions["record_response"].tolist()
    assert len(set(answers)) > 1
    assert model.generation_config.max_new_tokens == 8 and model.generation_config.do_sample is False


def test_adapter_export_copies_the_peft_adapter(trained_model_dir, tmp_path):
    from peft import AutoPeftModelForCausalLM

    out = tmp_path / "adapter"
    assert main(["export", "--model_path", trained_model_dir, "--output_directory", str(out), "--format", "adapter"]) == 0
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(os.listdir(out))
    assert "ludwig_llm_model.json" not in os.listdir(out)
    with open(os.path.join(trained_model_dir, "adapter_model.safetensors"), "rb") as a, open(out / "adapter_model.safetensors", "rb") as b:
        assert a.read() == b.read()
    assert AutoPeftModelForCausalLM.from_pretrained(str(out)).peft_config["default"].r == 8


def test_qlora_adapter_merges_into_the_dequantized_base_with_a_warning(make_config, small_dataset, tmp_path, capsys):
    config = make_config(quantization={"bits": 4}, trainer={"max_steps": 1}, generation={"max_new_tokens": 4})
    run = LudwigLLM(config).train(dataset=small_dataset, output_directory=str(tmp_path / "runs"))
    out = tmp_path / "merged"
    assert main(["export", "--model_path", os.path.join(run.run_directory, MODEL_DIR), "--output_directory", str(out)]) == 0
    assert "4-bit base model" in capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in saved
    model = AutoModelForCausalLM.from_pretrained(out)
    assert next(model.parameters()).dtype == torch.float32


def test_refusals_name_the_problem(trained_model_dir, tmp_path, capsys):
    prompt_tuning = tmp_path / "prompt_tuning_model"
    shutil.copytree(trained_model_dir, prompt_tuning)
    adapter_config = json.loads((prompt_tuning / "adapter_config.json").read_text())
    (prompt_tuning / "adapter_config.json").write_text(json.dumps({**adapter_config, "peft_type": "PROMPT_TUNING"}))
    assert main(["export", "--model_path", str(prompt_tuning), "--output_directory", str(tmp_path / "x")]) == 1
    error = capsys.readouterr().err
    assert "prompt_tuning adapter" in error and "cannot be merged" in error and "--format adapter" in error
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert main(["export", "--model_path", trained_model_dir, "--output_directory", str(tmp_path / "taken")]) == 1
    assert "not empty" in capsys.readouterr().err


def test_merged_export_has_a_model_card_for_plain_transformers(trained_model_dir, tmp_path):
    out = tmp_path / "merged"
    assert main(["export", "--model_path", trained_model_dir, "--output_directory", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "AutoModelForCausalLM.from_pretrained" in card
    assert "merged into the base model's weights" in card and "AutoPeftModelForCausalLM" not in card
    assert "[More Information Needed]" not in card
