"""Instruction-data presets: input feature types that know a common dataset layout.

Each preset is an input feature type (like `text` and `chat`) whose class names the data-layer
code that encodes it (``implementation``). Ludwig's own way, a `text` input with
`prompt.template` naming dataset columns, keeps working beside them.
"""

from __future__ import annotations

from typing import ClassVar, Iterator, Optional

from ludwig_llm.errors import ConfigIssue
from ludwig_llm.schema.base import config_class
from ludwig_llm.schema.checks import cross_field_check
from ludwig_llm.schema.features import BaseFeatureConfig, TextInputPreprocessing
from ludwig_llm.schema.fields import Impact, nested, option, required
from ludwig_llm.schema.registry import input_feature_registry

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


@input_feature_registry.register("alpaca")
@config_class
class AlpacaInputFeatureConfig(BaseFeatureConfig):
    """Alpaca instruction records: an instruction column, an optional input column, and the output feature's
    column as the response. Rows are rendered with the Alpaca prompt (the variant without `### Input:` when
    the input is missing or empty); the loss covers the response and the end-of-sequence token."""

    title = "Alpaca"
    implementation: ClassVar[str] = "ludwig_llm.data.presets:AlpacaFormat"
    name: str = required("Name of the feature; also the instruction column unless `column` is set.", example="instruction")
    type: str = option("alpaca", "Feature type: `alpaca` reads instruction/input/output records.", choices=["alpaca"])
    column: Optional[str] = option(None, "Dataset column holding the instruction; defaults to `name`.", impact=Impact.LOW)
    input_column: str = option(
        "input", "Dataset column holding the optional input; a dataset without it uses the no-input prompt for every row.",
        impact=Impact.LOW,
    )
    preprocessing: TextInputPreprocessing = nested(TextInputPreprocessing, "Tokenization of the rendered prompt.")


@input_feature_registry.register("completion")
@config_class
class CompletionInputFeatureConfig(BaseFeatureConfig):
    """Raw text for continued pre-training: every token of the text, and the end-of-sequence token after it,
    carries loss (the tokenizer's leading special tokens do not). Prediction continues the text; the output
    feature's column, optional in training, is the reference continuation in evaluation."""

    title = "Completion"
    implementation: ClassVar[str] = "ludwig_llm.data.presets:CompletionFormat"
    name: str = required("Name of the feature; also the text column unless `column` is set.", example="text")
    type: str = option("completion", "Feature type: `completion` trains on raw text.", choices=["completion"])
    column: Optional[str] = option(None, "Dataset column holding the text; defaults to `name`.", impact=Impact.LOW)
    preprocessing: TextInputPreprocessing = nested(TextInputPreprocessing, "Tokenization of the text.")


@input_feature_registry.register("input_output")
@config_class
class InputOutputInputFeatureConfig(BaseFeatureConfig):
    """Template-free segments (Axolotl's `input_output`): each cell holds a list of `{text, label}` objects
    (a CSV cell a JSON string); the texts are tokenized one by one and joined with nothing added between them,
    and `label: true` marks a segment that carries loss. Prediction reads the segments up to the trailing
    trainable ones (which are the reference in evaluation when the output column is absent) and generates."""

    title = "Input/output segments"
    implementation: ClassVar[str] = "ludwig_llm.data.presets:InputOutputFormat"
    name: str = required("Name of the feature; also the segments column unless `column` is set.", example="segments")
    type: str = option("input_output", "Feature type: `input_output` reads labelled text segments.", choices=["input_output"])
    column: Optional[str] = option(None, "Dataset column holding the segments; defaults to `name`.", impact=Impact.LOW)
    preprocessing: TextInputPreprocessing = nested(TextInputPreprocessing, "Tokenization of the segments.")


@cross_field_check
def structured_inputs_take_no_prompt_template(config) -> Iterator[ConfigIssue]:
    for i, feature in enumerate(config.input_features):
        if feature.type == "text" or not getattr(type(feature), "implementation", None):
            continue
        if config.prompt.template is not None:
            yield ConfigIssue("prompt.template", f"input feature '{feature.name}' is of type '{feature.type}', which renders "
                              "its own prompt; remove prompt.template (or use a 'text' input).")
        if config.prompt.apply_chat_template:
            yield ConfigIssue("prompt.apply_chat_template", f"input feature '{feature.name}' is of type '{feature.type}'; "
                              "apply_chat_template wraps a text prompt only (chat inputs use prompt.chat_template).", True)
        if feature.type != "chat" and config.prompt.chat_template is not None:
            yield ConfigIssue("prompt.chat_template", "a chat template renders 'chat' input features only.",
                              config.prompt.chat_template)
