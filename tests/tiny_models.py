"""Tiny, random, fully local Llama models for tests (no network needed).

``make_tiny_llama`` writes a 2-layer LlamaForCausalLM (hidden size 64, 4 heads)
and a matching byte-level BPE tokenizer to a directory, in the same layout a Hub
checkpoint has, so the directory can be used anywhere a ``base_model`` is
expected. Tests do not call it: they take the session's one tiny model, the
``tiny_model_dir`` fixture of tests/conftest.py (built once per session).

The tokenizer is byte-level, so any text (emoji, any language) encodes without
unknown tokens. Like Llama's, it prepends ``<s>`` and appends nothing; ``</s>``
is the end-of-sequence token, ``<pad>`` a separate padding token, and it has a
ChatML-like chat template.
"""

from __future__ import annotations

import os

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '</s>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# A small, fixed corpus keeps tokenizer training deterministic and fast while
# giving the BPE a few real merges, so tokens are not all single bytes.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Translate to German: good morning. Guten Morgen.",
    "Question: how many legs does a spider have? Answer: eight.",
    "positive negative neutral sentiment review movie great terrible",
    "def add(a, b):\n    return a + b\n",
    "Summarize the following text in one sentence.",
    "1 2 3 4 5 6 7 8 9 10 100 1000",
] * 4


def build_tiny_tokenizer(vocab_size: int = 384):
    """A byte-level BPE tokenizer with bos/eos/pad/unk and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special_tokens = [UNK, BOS, EOS, PAD, *CHAT_TOKENS]
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, tokenizer.token_to_id(BOS))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=CHAT_TOKENS,
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )


def make_tiny_llama(directory, vocab_size: int = 384, seed: int = 0, **config_overrides) -> str:
    """Write a tiny random Llama model and its tokenizer to ``directory``; return the path.

    ``config_overrides`` are passed to ``LlamaConfig`` (e.g. ``num_hidden_layers=1``).
    The same ``seed`` always gives the same weights.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = os.fspath(directory)
    tokenizer = build_tiny_tokenizer(vocab_size)
    config_kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config_kwargs.update(config_overrides)
    config = LlamaConfig(**config_kwargs)

    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
