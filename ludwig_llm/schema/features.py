"""Input and output feature sections: which dataset columns the model reads and predicts."""

from __future__ import annotations

from typing import List, Optional

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, nested, option, required
from ludwig_llm.schema.registry import input_feature_registry, output_feature_registry


@config_class
class TextInputPreprocessing(BaseConfig):
    """How the rendered prompt is turned into tokens."""

    title = "Prompt tokenization"

    max_sequence_length: Optional[int] = option(
        512,
        "Most tokens kept from the rendered prompt; longer prompts are cut from the left, so the end "
        "of the prompt (nearest the answer) is kept. The number of cut rows is reported. Null keeps "
        "the whole prompt, up to the model's context size.",
        min=1, impact=Impact.HIGH,
    )


@config_class
class TextOutputPreprocessing(BaseConfig):
    """How the target text is turned into tokens."""

    title = "Target tokenization"

    max_sequence_length: Optional[int] = option(
        256,
        "Most tokens kept from the target text (before the end-of-sequence token); longer targets "
        "are cut from the right. The number of cut rows is reported.",
        min=1, impact=Impact.HIGH,
    )


@config_class
class PassthroughEncoderConfig(BaseConfig):
    """Ludwig's encoder for an LLM's text input: the rendered prompt goes to the model as tokens, unchanged.
    It is the only one, so the section can be left out."""

    title = "Passthrough encoder"
    type: str = option("passthrough", "Encoder type; `passthrough` is the only one for an LLM.", choices=["passthrough"], impact=Impact.LOW)


@config_class
class TextExtractorDecoderConfig(BaseConfig):
    """Ludwig's decoder for an LLM's text output: the generated tokens are decoded to text.
    It is the only one, so the section can be left out."""

    title = "Text extractor decoder"
    type: str = option("text_extractor", "Decoder type; `text_extractor` is the only one for a text output.",
                       choices=["text_extractor"], impact=Impact.LOW)


class BaseFeatureConfig(BaseConfig):
    """Common to every feature: a name and the column it reads."""

    def column_name(self) -> str:
        return self.column or self.name


@input_feature_registry.register("text")
@config_class
class TextInputFeatureConfig(BaseFeatureConfig):
    """Free text given to the model; with a prompt template it is inserted as `{__sample__}`."""

    title = "Text input"
    name: str = required("Name of the feature; also the dataset column to read unless `column` is set.", example="input")
    type: str = option("text", "Feature type. LLMs take one `text` input feature.", choices=["text"])
    column: Optional[str] = option(
        None, "Dataset column to read; defaults to `name`.", impact=Impact.LOW, example="question"
    )
    preprocessing: TextInputPreprocessing = nested(TextInputPreprocessing, "Tokenization of the prompt.")
    encoder: Optional[PassthroughEncoderConfig] = option(
        None, "Ludwig's `{type: passthrough}`, accepted for compatibility; the prompt always goes to the model as tokens.",
        impact=Impact.LOW,
    )


@output_feature_registry.register("text")
@config_class
class TextOutputFeatureConfig(BaseFeatureConfig):
    """Free text the model learns to generate; predictions go to column `<name>_response`."""

    title = "Text output"
    name: str = required("Name of the feature; also the dataset column of target text unless `column` is set.", example="response")
    type: str = option("text", "Feature type: `text` generates free text.", choices=["text"])
    column: Optional[str] = option(None, "Dataset column holding the target; defaults to `name`.", impact=Impact.LOW)
    preprocessing: TextOutputPreprocessing = nested(TextOutputPreprocessing, "Tokenization of the target text.")
    decoder: Optional[TextExtractorDecoderConfig] = option(
        None, "Ludwig's `{type: text_extractor}`, accepted for compatibility; generated tokens are always decoded to text.",
        impact=Impact.LOW,
    )
    generation_metrics: bool = option(
        True,
        "Compute BLEU, ROUGE, character error rate and exact match on evaluation. They need a "
        "generation pass over the evaluation rows, the slowest part of evaluation; turn off to "
        "report only loss, perplexity and next-token accuracy.",
        impact=Impact.LOW,
    )


@output_feature_registry.register("category")
@config_class
class CategoryOutputFeatureConfig(BaseFeatureConfig):
    """One label from a fixed set, predicted by scoring each label's likelihood after the prompt.

    The prediction is always a valid label, and every row gets a probability per label.
    Only for in-context learning (`trainer.type: none`).
    """

    title = "Category output"
    name: str = required("Name of the feature; also the dataset column of labels unless `column` is set.", example="label")
    type: str = option("category", "Feature type: `category` picks one label from a set.", choices=["category"])
    column: Optional[str] = option(None, "Dataset column holding the label; defaults to `name`.", impact=Impact.LOW)
    vocab: Optional[List[str]] = option(
        None,
        "The label set, in order. Null takes the distinct labels of the training data, sorted.",
        example=["negative", "positive"],
    )
