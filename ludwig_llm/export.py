"""`ludwig_llm export`: a trained model as plain Hugging Face files, usable without ludwig_llm.

* ``merged``: the adapter merged into its base model, saved as safetensors with the tokenizer and a
  ``generation_config.json`` holding the run's `generation` section, so
  ``transformers.AutoModelForCausalLM.from_pretrained(X).generate(...)`` decodes as `predict` does
  (given the same prompt: the prompt template is in the model card). An adapter trained on a
  4/8-bit base is merged into the base reloaded in float32 (a warning says so). Prompt-learning
  adapters (prefix, prompt, p-tuning) add virtual tokens instead of changing weights: they cannot be
  merged, only exported as ``adapter``.
* ``adapter``: the peft adapter files (loadable with ``peft.AutoPeftModelForCausalLM``) and the tokenizer.

GGUF (llama.cpp, Ollama): export ``merged``, then run llama.cpp's converter on the directory:
``python convert_hf_to_gguf.py X --outfile model.gguf --outtype q8_0``.
"""

from __future__ import annotations

import os
import shutil
import sys

from ludwig_llm.api import LudwigLLM
from ludwig_llm.errors import UserError
from ludwig_llm.inference.generation import build_generation_config
from ludwig_llm.models.adapters import adds_virtual_tokens, merge_and_save, saved_adapter_type
from ludwig_llm.data.retrieval import RETRIEVAL_DIR
from ludwig_llm.models.bundle import CONFIG_FILE, MANIFEST_FILE, MERGED_DIR, read_model_directory
from ludwig_llm.models.card import write_model_card
from ludwig_llm.models.integrity import verify_model_files
from ludwig_llm.results import write_directory_atomically
from ludwig_llm.run_report import run_facts

FORMATS = ("merged", "adapter")
# What a model directory holds for ludwig_llm only; everything else is a plain Hugging Face file.
_LUDWIG_ONLY = {CONFIG_FILE, MANIFEST_FILE, MERGED_DIR, RETRIEVAL_DIR}


def export_model(model_path: str, output_directory: str, format: str = "merged") -> str:
    """Write the model at ``model_path`` (a run's model/) to ``output_directory`` in ``format``; returns that directory."""
    if format not in FORMATS:
        raise UserError(f"--format {format}: use one of {', '.join(FORMATS)}.")
    config, manifest = read_model_directory(model_path)
    if os.path.exists(output_directory) and (not os.path.isdir(output_directory) or os.listdir(output_directory)):
        raise UserError(f"--output_directory {output_directory} already exists and is not empty; choose a new directory.")
    if format == "adapter":
        if manifest.weights != "adapter":
            raise UserError(f"{model_path} has no adapter (its weights are '{manifest.weights}'); use --format merged.")
        verify_model_files(model_path, manifest.weights, manifest.checksums)
        write_directory_atomically(output_directory, lambda out: _copy_plain_files(model_path, out))
        return output_directory
    adapter_type = saved_adapter_type(model_path) if manifest.weights == "adapter" else None
    if adds_virtual_tokens(adapter_type):
        raise UserError(f"{model_path} holds a {adapter_type} adapter: it adds virtual tokens instead of changing weights, "
                        "so it cannot be merged into the model; export it with --format adapter.")
    built = LudwigLLM.load(model_path).loaded_model
    generation_config = build_generation_config(built.model, built.tokenizer, config.generation)
    if manifest.weights == "adapter" and built.quantized:
        print(f"warning: the adapter was trained on a {config.quantization.bits}-bit base model; it is merged into the "
              "base model reloaded in float32 (de-quantized), so outputs differ slightly from the quantized model's.",
              file=sys.stderr)

    def write(out: str) -> None:  # into a staging directory, renamed to output_directory once complete
        if manifest.weights == "adapter":
            merge_and_save(built.model, out, quantized=built.quantized, tokenizer=built.tokenizer,
                           trust_remote_code=config.model_parameters.trust_remote_code)
        else:  # full fine-tuning, or the base model unchanged (trainer none)
            built.model.config.use_cache = True
            built.model.save_pretrained(out)
            built.tokenizer.save_pretrained(out)
        generation_config.save_pretrained(out)
        write_model_card(out, config.to_dict(), {**manifest.__dict__, "weights": "merged"}, **run_facts(os.path.dirname(os.path.abspath(model_path))))

    write_directory_atomically(output_directory, write)
    return output_directory



def _copy_plain_files(model_path: str, output_directory: str) -> None:
    os.makedirs(output_directory, exist_ok=True)
    for name in sorted(os.listdir(model_path)):
        source = os.path.join(model_path, name)
        if name not in _LUDWIG_ONLY and os.path.isfile(source):
            shutil.copy2(source, os.path.join(output_directory, name))
