"""Conversation data: the `chat` input feature and the registry of chat templates.

A chat template is a jinja2 string (the format of ``tokenizer.chat_template``), rendered by
transformers' sandboxed renderer. Every registered template renders conversations
incrementally (the text of the first k turns is a prefix of the text of k+1 turns), which is
what lets the data layer find the tokens of each turn, and so the loss mask, for any template.
"""

from __future__ import annotations

from typing import ClassVar, Optional

from ludwig_llm.schema.base import Documented, config_class
from ludwig_llm.schema.features import BaseFeatureConfig
from ludwig_llm.schema.fields import Impact, nested, option, required
from ludwig_llm.schema.registry import chat_template_registry, input_feature_registry
from ludwig_llm.schema.base import BaseConfig


class ChatTemplate(Documented):
    """A named chat template: its jinja2 text and the marker that ends a turn."""

    template: ClassVar[str] = ""
    end_of_turn: ClassVar[str] = ""


def _roles_alternate(system_allowed: bool) -> str:
    # Jinja that refuses a conversation whose user and assistant turns do not alternate, starting with the user.
    system = "" if system_allowed else (
        "{% if message['role'] == 'system' and not loop.first %}"
        "{{ raise_exception('a system message can only be the first turn') }}{% endif %}"
    )
    return (
        "{% set offset = 1 if messages[0]['role'] == 'system' else 0 %}" + system +
        "{% if message['role'] != 'system' and (message['role'] == 'user') != ((loop.index0 - offset) % 2 == 0) %}"
        "{{ raise_exception('turns must alternate user/assistant, starting with user') }}{% endif %}"
    )


@chat_template_registry.register("chatml")
class ChatMLTemplate(ChatTemplate):
    """ChatML, as used by SmolLM2, Qwen, Hermes and many others: `<|im_start|>role` ... `<|im_end|>`."""

    title = "ChatML"
    end_of_turn = "<|im_end|>"
    template = (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


@chat_template_registry.register("qwen")
class QwenTemplate(ChatTemplate):
    """Qwen2 / Qwen2.5: ChatML with a default system message when the conversation has none."""

    title = "Qwen (ChatML)"
    end_of_turn = "<|im_end|>"
    template = (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


@chat_template_registry.register("llama3")
class Llama3Template(ChatTemplate):
    """Llama 3 / 3.1 / 3.2: header tokens around the role, `<|eot_id|>` after each turn."""

    title = "Llama 3"
    end_of_turn = "<|eot_id|>"
    template = (
        "{% if bos_token %}{{ bos_token }}{% endif %}"
        "{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    )


@chat_template_registry.register("mistral")
class MistralTemplate(ChatTemplate):
    """Mistral / Mixtral instruct: `[INST] user [/INST]answer</s>`. There is no system role: a system
    message is put before the first user message. User and assistant turns must alternate."""

    title = "Mistral"
    end_of_turn = "</s>"
    template = (
        "{% if bos_token %}{{ bos_token }}{% endif %}"
        "{% for message in messages %}" + _roles_alternate(system_allowed=False) +
        "{% if message['role'] == 'user' %}"
        "{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}"
        "{{ '[INST] ' + messages[0]['content'] + '\\n\\n' + message['content'] + ' [/INST]' }}"
        "{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + '</s>' }}{% endif %}"
        "{% endfor %}"
    )


@chat_template_registry.register("gemma")
class GemmaTemplate(ChatTemplate):
    """Gemma / Gemma 2: `<start_of_turn>user` ... `<end_of_turn>`, the assistant is called `model`. There is
    no system role: a system message is put before the first user message. Turns must alternate."""

    title = "Gemma"
    end_of_turn = "<end_of_turn>"
    template = (
        "{% if bos_token %}{{ bos_token }}{% endif %}"
        "{% for message in messages %}" + _roles_alternate(system_allowed=False) +
        "{% if message['role'] != 'system' %}"
        "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\\n' }}"
        "{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{% endif %}"
        "{{ message['content'] + '<end_of_turn>\\n' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
    )


@chat_template_registry.register("phi3")
class Phi3Template(ChatTemplate):
    """Phi-3 / Phi-3.5: `<|user|>` ... `<|end|>`."""

    title = "Phi-3"
    end_of_turn = "<|end|>"
    template = (
        "{% for message in messages %}"
        "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    )


@config_class
class ChatInputPreprocessing(BaseConfig):
    """How a conversation is turned into tokens and which of them carry loss."""

    title = "Conversation tokenization"

    max_sequence_length: Optional[int] = option(
        1024,
        "Most tokens kept from a rendered conversation. A longer one loses its oldest whole turns (a user "
        "turn and the assistant turns after it) first, keeping the system message and the last exchange; "
        "only if that still does not fit are tokens cut from the left. The number of rows cut is reported "
        "in the preprocessing statistics (`truncated_turn_rows`). Null: up to the model's context size.",
        min=1, impact=Impact.HIGH,
    )
    train_on_last_turn_only: bool = option(
        False,
        "Compute the loss on the last assistant turn only. Off: every assistant turn carries loss (its content "
        "and the template's end-of-turn marker); system and user turns never do.",
        impact=Impact.MEDIUM,
    )


@input_feature_registry.register("chat")
@config_class
class ChatInputFeatureConfig(BaseFeatureConfig):
    """A conversation: each cell holds a list of turns, OpenAI `{role, content}` (roles system, user,
    assistant) or ShareGPT `{from, value}` (system, human, gpt), recognised without configuration. JSON,
    JSON Lines, Parquet and Hugging Face datasets hold lists natively; a CSV cell may hold the list as a
    JSON string.

    The conversation is rendered with the base model's own chat template, or with the one named by
    `prompt.chat_template`; `prompt.task`, when set, becomes the system message of conversations that have
    none. If the row has the output feature's column, its text is the conversation's final assistant turn
    (so single-turn prompt/reply data works too); otherwise a conversation ending with an assistant turn
    has that turn as its target. Prediction generates the next assistant turn.
    """

    title = "Chat input"
    implementation: ClassVar[str] = "ludwig_llm.data.chat:ChatFormat"
    name: str = required("Name of the feature; also the dataset column of conversations unless `column` is set.", example="messages")
    type: str = option("chat", "Feature type: `chat` reads a conversation (a list of turns).", choices=["chat"])
    column: Optional[str] = option(
        None, "Dataset column holding the conversations; defaults to `name`.", impact=Impact.LOW, example="conversations"
    )
    preprocessing: ChatInputPreprocessing = nested(ChatInputPreprocessing, "Tokenization and loss mask of the conversation.")
