"""A name -> class registry with a decorator to fill it, one per pluggable section of the config.

A registered schema class is the type's only registration: where code implements the type, the class
names it in `implementation` as a "module:attribute" string (the schema stays free of torch), and
`load_implementation` imports it when it is used.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Dict, Generic, Iterator, List, TypeVar

from ludwig_llm.errors import PREVIEW_CHARS, preview

T = TypeVar("T")


# Names that mean something else (peft tuners, Ludwig sections and trainers, transformers generation settings):
# written on purpose, so a neighbour that merely looks alike ('ln_tuning' -> 'p_tuning') is the wrong hint.
KNOWN_OTHER_CONCEPTS = frozenset({
    # peft's tuner types (PeftType, lower-cased)
    "adaption_prompt", "boft", "bone", "c3a", "cpt", "delora", "fourierft", "gralora", "hira", "hra", "ln_tuning",
    "miss", "multitask_prompt_tuning", "oft", "poly", "randlora", "road", "shira", "tinylora", "trainable_tokens",
    "vblora", "xlora", "waveft", "psoft", "adamss",
    # Ludwig's sections and keys without a counterpart here
    "adapters", "hyperopt", "combiner", "defaults", "ludwig_version", "splitter", "output_logits", "proc_column",
    # Ludwig's trainer types not registered here
    "ecd",
    # transformers generation settings
    "num_beam_groups", "diversity_penalty", "penalty_alpha", "num_return_sequences", "epsilon_cutoff", "eta_cutoff",
})


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def did_you_mean(value: object, candidates: List[object]) -> str:
    """' Did you mean 'x'?' for a typo of a candidate, else ''. The candidate is shown as written in
    YAML (``'lora'``, but ``4`` for a number), so a near miss like the string ``'4'`` reads sensibly.

    A typo is alike overall (difflib ratio >= 0.6) and either a few edits away (at most one per four characters,
    at least one) or a cut-off start of the candidate (most of it); a name that is itself a different known concept
    (KNOWN_OTHER_CONCEPTS) gets no suggestion.
    """
    text = value if isinstance(value, str) else preview(value)  # preview: bounded, even for a 5000-digit int
    if len(text) > PREVIEW_CHARS or text.lower() in KNOWN_OTHER_CONCEPTS:  # difflib's cost grows with the length
        return ""
    by_text = {str(c): c for c in candidates}
    allowed = max(1, len(text) // 4)
    close = [c for c in difflib.get_close_matches(text, list(by_text), n=3, cutoff=0.6)
             if _edits(text.lower(), c.lower()) <= allowed or (c.startswith(text) and len(text) >= 0.6 * len(c))]
    return f" Did you mean {by_text[close[0]]!r}?" if close else ""


def load_implementation(schema_class) -> object:
    """The class or function that a registered schema class names in its `implementation` ("module:attribute")."""
    module_name, _, attribute = schema_class.implementation.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class Registry(Generic[T]):
    """Maps a type name (or a number, for quantization bits) to the class that implements it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[object, T] = {}

    def register(self, name: object) -> Callable[[T], T]:
        def decorator(cls: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered to {self._entries[name]!r}")
            self._entries[name] = cls
            return cls

        return decorator

    def unregister(self, name: object) -> None:
        self._entries.pop(name, None)

    def get(self, name: object) -> T:
        if name not in self:
            raise KeyError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: object) -> str:
        known = ", ".join(repr(k) for k in self._entries)
        return f"unknown {self.kind} {preview(name)}; known: {known}.{did_you_mean(name, list(self._entries))}"

    def names(self) -> List[object]:
        return list(self._entries)

    def items(self):
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # an unhashable config value (a list or mapping where a name belongs) is simply unknown
            return False

    def __iter__(self) -> Iterator[object]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


model_type_registry: Registry = Registry("model type")
adapter_registry: Registry = Registry("adapter type")
quantization_registry: Registry = Registry("quantization bits")
rope_scaling_registry: Registry = Registry("RoPE scaling type")
trainer_registry: Registry = Registry("trainer type")
input_feature_registry: Registry = Registry("input feature type")
output_feature_registry: Registry = Registry("output feature type")
category_decoder_registry: Registry = Registry("category decoder type")
retrieval_registry: Registry = Registry("retrieval type")
backend_registry: Registry = Registry("backend type")
strategy_registry: Registry = Registry("distribution strategy")
split_registry: Registry = Registry("split type")
chat_template_registry: Registry = Registry("chat template")
