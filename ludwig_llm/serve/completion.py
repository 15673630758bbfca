"""Free-form text generation for the OpenAI-compatible endpoints and the terminal chat.

Prompts are raw text (completions) or chat messages rendered with the tokenizer's chat template;
decoding starts from the model's `generation` section, and a request may override `max_tokens`,
`temperature`, `top_p` and `stop`. Streaming uses transformers' TextIteratorStreamer; the streamed
pieces join to exactly the text a non-streamed call returns.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import torch
from transformers import TextIteratorStreamer

from ludwig_llm.errors import UserError
from ludwig_llm.inference.generation import build_generation_config, eos_token_ids, model_device


@dataclass
class SamplingOptions:
    """What a request may override; None keeps the model's own `generation` setting."""

    max_tokens: Optional[int] = None
    temperature: Optional[float] = None  # 0 means greedy
    top_p: Optional[float] = None
    stop: Sequence[str] = ()
    seed: Optional[int] = None


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple:
    """(text before the earliest stop string, whether one was found)."""
    positions = [text.find(s) for s in stop if s and s in text]
    return (text[:min(positions)], True) if positions else (text, False)


class StopStringFilter:
    """Streams text while holding back any tail that may be the start of a stop string."""

    def __init__(self, stop: Sequence[str]):
        self.stop = [s for s in stop if s]
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.pending += piece
        text, found = cut_at_stop(self.pending, self.stop)
        if found:
            self.stopped, self.pending = True, ""
            return text
        keep = max((k for s in self.stop for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        emitted, self.pending = self.pending[:len(self.pending) - keep], self.pending[len(self.pending) - keep:]
        return emitted

    def flush(self) -> str:
        text, self.pending = ("" if self.stopped else self.pending), ""
        return text


class TextGenerator:
    """Generation from one prompt at a time with a loaded model (callers serialize access)."""

    def __init__(self, built, generation_config):
        self.model = built.model
        self.tokenizer = built.tokenizer
        self.generation = generation_config  # our schema's GenerationConfig: the defaults

    # ------------------------------------------------------------------ prompts

    def text_prompt_ids(self, prompt: str) -> List[int]:
        ids = self.tokenizer(prompt)["input_ids"]
        if not ids:
            raise UserError("the prompt is empty.")
        return list(ids)

    def chat_prompt_ids(self, messages: Sequence[dict]) -> List[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError("this model's tokenizer has no chat template; use /v1/completions or /predict instead.")
        if not messages:
            raise UserError("'messages' is empty.")
        rendered = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        # The template writes the special tokens (bos) itself.
        return list(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])

    def truncate_chat(self, messages: List[dict], max_prompt_tokens: int) -> List[dict]:
        """The newest messages whose prompt fits in ``max_prompt_tokens`` (a leading system message is kept)."""
        system = [m for m in messages[:1] if m.get("role") == "system"]
        turns = messages[len(system):]
        while len(turns) > 1 and len(self.chat_prompt_ids(system + turns)) > max_prompt_tokens:
            turns = turns[1:]
        return system + turns

    def context_length(self) -> int:
        config = self.model.config
        return int(getattr(config, "max_position_embeddings", None) or self.tokenizer.model_max_length)

    # ------------------------------------------------------------------ generation

    def check(self, options: SamplingOptions) -> None:
        """A UserError for options out of range, before any work is queued."""
        self._settings(options)

    def _settings(self, options: SamplingOptions):
        overrides = {}
        if options.max_tokens is not None:
            if options.max_tokens < 1:
                raise UserError(f"max_tokens must be at least 1 (got {options.max_tokens}).")
            overrides["max_new_tokens"] = options.max_tokens
        if options.temperature is not None:
            if options.temperature < 0:
                raise UserError(f"temperature must be 0 or more (got {options.temperature}).")
            overrides["do_sample"] = options.temperature > 0
            if options.temperature > 0:
                overrides["temperature"] = options.temperature
        if options.top_p is not None:
            if not 0 < options.top_p <= 1:
                raise UserError(f"top_p must be in (0, 1] (got {options.top_p}).")
            overrides["top_p"] = options.top_p
        stop = list(self.generation.stop_strings or []) + [s for s in options.stop if s]
        overrides["stop_strings"] = stop or None
        settings = dataclasses.replace(self.generation, **overrides)
        return settings, build_generation_config(self.model, self.tokenizer, settings)

    def _generate(self, prompt_ids: List[int], options: SamplingOptions, streamer=None) -> List[int]:
        settings, hf_config = self._settings(options)
        if options.seed is not None:
            torch.manual_seed(options.seed)
        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=model_device(self.model))
        extra = {"tokenizer": self.tokenizer} if settings.stop_strings else {}
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                         generation_config=hf_config, streamer=streamer, **extra)
        tokens = output[0, input_ids.shape[1]:].tolist()
        eos = eos_token_ids(self.model, self.tokenizer)
        for position, token in enumerate(tokens):
            if token in eos:
                return tokens[:position]
        return tokens

    @staticmethod
    def _finish(prompt_ids, tokens, text, settings, stopped: bool) -> Completion:
        finish = "length" if len(tokens) >= settings.max_new_tokens and not stopped else "stop"
        return Completion(text, len(prompt_ids), len(tokens), finish)

    def complete(self, prompt_ids: List[int], options: SamplingOptions) -> Completion:
        settings, _ = self._settings(options)
        tokens = self._generate(prompt_ids, options)
        text, stopped = cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), settings.stop_strings or ())
        return self._finish(prompt_ids, tokens, text, settings, stopped)

    def stream(self, prompt_ids: List[int], options: SamplingOptions) -> Iterator:
        """Yields text pieces as they are generated, then the finished Completion as the last item."""
        settings, _ = self._settings(options)  # bad options fail here, before a thread starts
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict = {}

        def run():
            try:
                result["tokens"] = self._generate(prompt_ids, options, streamer)
            except BaseException as error:  # re-raised in the caller's thread
                result["error"] = error
                streamer.end()

        thread = threading.Thread(target=run, name="ludwig_llm-generate", daemon=True)
        thread.start()
        stops = StopStringFilter(settings.stop_strings or ())
        streamed = []
        for piece in streamer:
            text = stops.feed(piece)
            if text:
                streamed.append(text)
                yield text
        thread.join()
        if "error" in result:
            raise result["error"]
        tail = stops.flush()
        if tail:
            streamed.append(tail)
            yield tail
        yield self._finish(prompt_ids, result["tokens"], "".join(streamed), settings, stops.stopped)
