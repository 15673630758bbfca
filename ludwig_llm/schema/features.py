"""Input and output feature sections: which dataset columns the model reads and predicts."""

from __future__ import annotations

from typing import ClassVar, Dict, List, Optional

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, nested, option, required, typed_union
from ludwig_llm.schema.registry import category_decoder_registry, input_feature_registry, output_feature_registry


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


@config_class
class CategoryMatchRule(BaseConfig):
    """Ludwig's rule for finding a label in generated text; accepted for compatibility (see the decoder)."""

    title = "Label match rule"
    value: str = required("The text (or regular expression) Ludwig looked for.", example="positive", impact=Impact.LOW)
    type: str = option("contains", "How Ludwig matched the label in generated text: `contains` or `regex`.",
                       choices=["contains", "regex"], impact=Impact.LOW)


@category_decoder_registry.register("category_extractor")
@config_class
class CategoryExtractorDecoderConfig(BaseConfig):
    """Ludwig's decoder that generates text and matches it against each label. Here the labels are scored
    instead (every prediction is a valid label, with a probability per label), so the match rules are not
    needed: the keys of `match` give the label set, in order."""

    title = "Category extractor decoder"
    implementation: ClassVar[str] = "ludwig_llm.inference.label_scoring:score_labels"
    type: str = option("category_extractor", "Decoder type: `category_extractor` scores each label after the prompt.",
                       choices=["category_extractor"], impact=Impact.MEDIUM)
    match: Optional[Dict[str, CategoryMatchRule]] = option(
        None, "Ludwig's `{label: {type: contains|regex, value: ...}}`; the keys are the label set, in order, unless "
        "`vocab` is set. The rules themselves are not used: each label is scored after the prompt.",
        example={"positive": {"type": "contains", "value": "positive"}}, impact=Impact.MEDIUM,
    )


@category_decoder_registry.register("classifier")
@config_class
class ClassifierDecoderConfig(BaseConfig):
    """A classification head (Ludwig 0.8's classifier decoder): a linear layer on the final hidden state of the
    prompt's last token, trained with cross-entropy together with the adapter (`trainer.type: finetune`). It is
    saved next to the adapter as `classifier_head.safetensors`. No text is generated or scored: one forward
    pass per row gives every label's probability."""

    title = "Classifier decoder"
    implementation: ClassVar[str] = "ludwig_llm.models.classifier_head:classify"
    type: str = option("classifier", "Decoder type: `classifier` trains a classification head.", choices=["classifier"],
                       impact=Impact.MEDIUM)


@config_class
class CategoryOutputPreprocessing(BaseConfig):
    """How the label column is read."""

    title = "Label preprocessing"
    fallback_label: Optional[str] = option(
        None,
        "The label given to a row whose label is not in the label set (the data's own cells, in training, "
        "validation, test and evaluation). It must be one of the labels. Null: such a row is an error that "
        "names it. (Ludwig uses it when generated text matches no label; label scoring always predicts a label.)",
        example="neutral", impact=Impact.MEDIUM,
    )


@output_feature_registry.register("category")
@config_class
class CategoryOutputFeatureConfig(BaseFeatureConfig):
    """One label from a fixed set, predicted by scoring each label's likelihood after the prompt (or, with
    `decoder: {type: classifier}`, by a trained classification head).

    The prediction is always a valid label, and every row gets a probability per label. With `trainer.type:
    none` the prompt does the work (in-context learning); with `finetune` the model is trained to answer
    each prompt with its label's text.
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
    preprocessing: CategoryOutputPreprocessing = nested(CategoryOutputPreprocessing, "How the label column is read.")
    decoder: Optional[object] = typed_union(
        category_decoder_registry, None,
        "How a label is predicted: null or `category_extractor` score each label's text after the prompt; "
        "`classifier` trains a classification head (needs `trainer.type: finetune`).",
        impact=Impact.MEDIUM,
    )

    def label_set(self) -> Optional[List[str]]:
        """The labels the config fixes (`vocab`, else the keys of `decoder.match`), or None (taken from the data)."""
        if self.vocab:
            return list(self.vocab)
        match = getattr(self.decoder, "match", None)
        return list(match) if match else None

    def label_decoder(self):
        """The decoder section in effect: label scoring (`category_extractor`) when none is given. Its class's
        `implementation` gives each row's label probabilities."""
        return self.decoder if self.decoder is not None else CategoryExtractorDecoderConfig()

    def uses_classifier_head(self) -> bool:
        return getattr(self.decoder, "type", None) == "classifier"
