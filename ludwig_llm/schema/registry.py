"""A name -> class registry with a decorator to fill it, one per pluggable section of the config."""

from __future__ import annotations

import difflib
from typing import Callable, Dict, Generic, Iterator, List, TypeVar

T = TypeVar("T")


def did_you_mean(value: object, candidates: List[object]) -> str:
    """' Did you mean 'x'?' when a close candidate exists, else ''. The candidate is shown as written in
    YAML (``'lora'``, but ``4`` for a number), so a near miss like the string ``'4'`` reads sensibly."""
    by_text = {str(c): c for c in candidates}
    close = difflib.get_close_matches(str(value), list(by_text), n=1, cutoff=0.6)
    return f" Did you mean {by_text[close[0]]!r}?" if close else ""


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
        return f"unknown {self.kind} {name!r}; known: {known}.{did_you_mean(name, list(self._entries))}"

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
retrieval_registry: Registry = Registry("retrieval type")
backend_registry: Registry = Registry("backend type")
strategy_registry: Registry = Registry("distribution strategy")
split_registry: Registry = Registry("split type")
chat_template_registry: Registry = Registry("chat template")
