"""The model card: `model/README.md` of a run, in the Hugging Face model card format.

It replaces peft's empty template with what a reader needs: the base model, the adapter and its
settings, the task (input, output, prompt), the training settings, a fingerprint of the data, the
test metrics when the run evaluated, how to load the model, and the full config. `bundle` writes it
when the model is saved; the run refreshes it once the data fingerprint and test metrics are known.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, Optional

import yaml

from ludwig_llm.results import write_text_atomically

CARD_FILE = "README.md"
_TRAINING_KEYS = ("type", "epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate",
                  "learning_rate_scheduler", "optimizer", "precision", "seed")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def write_model_card(directory: str, config: Dict[str, Any], manifest: Dict[str, Any], *,
                     data_fingerprint: Optional[str] = None, test_statistics: Optional[Dict[str, Any]] = None) -> str:
    """Write ``directory``/README.md from the config and manifest (as dicts); returns its path."""
    path = os.path.join(directory, CARD_FILE)
    write_text_atomically(path, render_model_card(config, manifest, data_fingerprint=data_fingerprint, test_statistics=test_statistics))
    return path


def render_model_card(config: Dict[str, Any], manifest: Dict[str, Any], *, data_fingerprint: Optional[str] = None,
                      test_statistics: Optional[Dict[str, Any]] = None) -> str:
    base_model = str(config.get("base_model"))
    adapter = config.get("adapter") or None
    weights = manifest.get("weights")
    metadata: Dict[str, Any] = {"library_name": "peft" if weights == "adapter" else "transformers",
                                "tags": ["ludwig_llm", "text-generation"] + ([adapter["type"]] if adapter else [])}
    if _HUB_ID.match(base_model) and not os.path.exists(base_model):
        metadata["base_model"] = base_model  # only a Hub id: the Hub rejects local paths here
    inputs = ", ".join(f"`{f['name']}` ({f['type']})" for f in config.get("input_features", []))
    outputs = ", ".join(f"`{f['name']}` ({f['type']})" for f in config.get("output_features", []))
    what = {"adapter": f"a {adapter['type'] if adapter else 'peft'} adapter on the base model",
            "merged": f"the {adapter['type'] if adapter else 'peft'} adapter merged into the base model's weights",
            "full": "every weight of the base model, fine-tuned", "base": "the base model unchanged (in-context learning)"}
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "",
             f"# {_title(config)}", "",
             f"Trained with ludwig_llm from `{base_model}`: "
             f"{what.get(weights, weights)}.", "",
             "## Model", "",
             f"- Base model: `{base_model}` (loaded from `{manifest.get('base_model')}`)",
             f"- Weights saved here: {weights}"]
    if adapter:
        settings = ", ".join(f"{k}={v}" for k, v in adapter.items() if k != "type" and v is not None)
        lines.append(f"- Adapter: {adapter['type']} ({settings})")
    if config.get("quantization"):
        lines.append(f"- Quantization during training: {config['quantization'].get('bits')}-bit")
    lines += ["", "## Task", "", f"- Input: {inputs}", f"- Output: {outputs}"]
    if manifest.get("labels"):
        lines.append(f"- Labels: {', '.join(map(str, manifest['labels']))}")
    template = (config.get("prompt") or {}).get("template")
    if template:
        lines += ["- Prompt template (`{__sample__}` is the input):", "", "```text", str(template).rstrip("\n"), "```"]
    trainer = config.get("trainer") or {}
    lines += ["", "## Training", ""] + [f"- {k}: {trainer[k]}" for k in _TRAINING_KEYS if trainer.get(k) is not None]
    lines.append(f"- Data fingerprint (sha256 of the rows): `{data_fingerprint}`" if data_fingerprint
                 else "- Data fingerprint: in the run's description.json")
    lines += ["", "## Evaluation", ""] + _metrics_lines(test_statistics)
    lines += ["", "## How to load", ""]
    if weights == "merged":
        lines += ["With transformers (`generation_config.json` holds the run's decoding settings; render the prompt "
                  "template above yourself):", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  'model = AutoModelForCausalLM.from_pretrained("path/to/model")',
                  'tokenizer = AutoTokenizer.from_pretrained("path/to/model")', "```", ""]
    else:
        lines += ["With ludwig_llm (same prompt rendering and decoding as training):", "", "```python",
                  "from ludwig_llm.api import LudwigLLM", "", 'model = LudwigLLM.load("path/to/model")',
                  'predictions = model.predict("rows.csv").predictions', "```", ""]
    if weights == "adapter":
        lines += ["With peft alone:", "", "```python", "from peft import AutoPeftModelForCausalLM",
                  "from transformers import AutoTokenizer", "",
                  'model = AutoPeftModelForCausalLM.from_pretrained("path/to/model")',
                  'tokenizer = AutoTokenizer.from_pretrained("path/to/model")', "```", ""]
    if weights != "merged":
        lines += ["As plain transformers weights: `ludwig_llm export --model_path path/to/model --output_directory merged`.", "",
                  "Serve it: `ludwig_llm serve --model_path path/to/model` (REST and OpenAI-compatible endpoints).", ""]
    lines += ["## Config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip("\n"), "```", ""]
    return "\n".join(lines)


def _title(config: Dict[str, Any]) -> str:
    outputs = [f["name"] for f in config.get("output_features", [])]
    base = os.path.basename(str(config.get("base_model")).rstrip("/"))
    return f"{base} fine-tuned for {', '.join(outputs) or 'generation'}"


def _metrics_lines(test_statistics: Optional[Dict[str, Any]]) -> list:
    if not test_statistics:
        return ["Not evaluated on a test split in this run (`ludwig_llm evaluate` computes the metrics)."]
    lines = []
    for feature, metrics in test_statistics.items():
        scalar = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        lines += [f"Test split, output `{feature}`:", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {value:.4g} |" if isinstance(value, float) else f"| {name} | {value} |"
                  for name, value in scalar.items()]
        lines.append("")
    return lines
