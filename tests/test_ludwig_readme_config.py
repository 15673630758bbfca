"""Ludwig's flagship README QLoRA config, unchanged but for the base model and the run's length, trains and
predicts on alpaca-style data: its input feature is named `prompt`, its template reads the columns
`instruction` and `input`, and the data has no `prompt` column (Ludwig's way, issue #14)."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import yaml

from ludwig_llm.api import LudwigLLM
from ludwig_llm.errors import UserError
from ludwig_llm.results import MODEL_DIR
README_QLORA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ludwig_corpus", "README__L94__86a97e5.yaml")
# Ludwig's README QLoRA config (Llama-2, alpaca template)


def alpaca_rows(count: int) -> pd.DataFrame:
    """Alpaca's shape: instruction, an input that is often empty, output."""
    return pd.DataFrame([
        {"instruction": f"Add one to the number {i}." if i % 2 else "Write the next number.",
         "input": "" if i % 2 else f"{i}", "output": str(i + 1)}
        for i in range(count)
    ])


def readme_config(model_dir: str) -> dict:
    with open(README_QLORA, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    assert config["input_features"] == [{"name": "prompt", "type": "text"}]
    assert config["quantization"] == {"bits": 4} and "{instruction}" in config["prompt"]["template"]
    config["base_model"] = model_dir  # a tiny local model instead of Llama-2-7b
    config["trainer"].update(epochs=2, gradient_accumulation_steps=2, batch_size=2)  # a short run
    config["preprocessing"]["sample_ratio"] = 1.0
    config["generation"] = {"max_new_tokens": 4}
    return config


def test_ludwig_readme_qlora_config_trains_and_predicts_on_alpaca_data(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("bitsandbytes")
    data = alpaca_rows(24)
    assert "prompt" not in data.columns
    model = LudwigLLM(readme_config(tiny_model_dir))
    trained = model.train(dataset=data, output_directory=str(tmp_path / "results"))
    assert trained.training_statistics["total_steps"] == 10  # 2 epochs of 19 training rows: 10 batches of 2, 2 per step
    loaded = LudwigLLM.load(os.path.join(trained.run_directory, MODEL_DIR))
    assert loaded.loaded_model.quantized  # trained and reloaded as QLoRA (4-bit base, LoRA adapter)
    predictions = loaded.predict(data.head(4), output_directory=None).predictions
    assert list(predictions.columns[:1]) == ["output_response"] and len(predictions) == 4
    assert predictions["output_response"].map(lambda value: isinstance(value, str)).all()

    capsys.readouterr()
    LudwigLLM(readme_config(tiny_model_dir)).preprocess(dataset=data, debug=True, debug_rows=24)
    shown = capsys.readouterr().out
    assert "  | ### Instruction:\n  | Write the next number.\n  | \n  | ### Input:\n  | 0\n" in shown


def test_a_row_whose_template_columns_are_all_empty_is_refused_naming_them(tiny_model_dir, tmp_path):
    data = alpaca_rows(8)
    data.loc[3, ["instruction", "input"]] = ["", None]
    with pytest.raises(UserError, match=r"columns 'instruction', 'input' \(named in prompt.template\) are all empty"):
        LudwigLLM(readme_config(tiny_model_dir)).train(dataset=data, output_directory=str(tmp_path))
