"""`ludwig_llm chat`: talk to a trained model in the terminal, its answers streamed token by token.

The conversation is rendered with the tokenizer's chat template; the oldest turns are dropped when the
prompt would not leave room for an answer. `/reset` starts over, `/exit` (or end of input) quits.
"""

from __future__ import annotations

import sys
from typing import List, Optional, TextIO

from ludwig_llm.api import LudwigLLM
from ludwig_llm.errors import UserError
from ludwig_llm.serve.completion import SamplingOptions, TextGenerator

RESET, EXIT = "/reset", ("/exit", "/quit")
USER_PROMPT, ASSISTANT_PREFIX = "you: ", "assistant: "


def run_chat(model_path: str, *, system: Optional[str] = None, max_history_tokens: Optional[int] = None,
             input_stream: TextIO = sys.stdin, output: TextIO = sys.stdout) -> None:
    predictor = LudwigLLM.load(model_path)
    generator = TextGenerator(predictor.loaded_model, predictor.config.generation)
    if not getattr(generator.tokenizer, "chat_template", None):
        raise UserError(f"{model_path}: the tokenizer has no chat template, so it cannot chat; use `ludwig_llm predict`.")
    budget = max_history_tokens or generator.context_length() - generator.generation.max_new_tokens
    if budget < 1:
        raise UserError(f"--max_history_tokens must be at least 1 (got {budget}).")
    start: List[dict] = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    output.write(f"chatting with {model_path}; {RESET} forgets the conversation, {EXIT[0]} quits.\n")
    while True:
        output.write(USER_PROMPT)
        output.flush()
        line = input_stream.readline()
        if not line:  # end of input
            output.write("\n")
            return
        text = line.strip()
        if text in EXIT:
            return
        if text == RESET:
            messages = list(start)
            output.write("(conversation reset)\n")
            continue
        if not text:
            continue
        kept = generator.truncate_chat(messages + [{"role": "user", "content": text}], budget)
        if len(generator.chat_prompt_ids(kept)) > budget:
            output.write(f"(that message is longer than the {budget} tokens the prompt may hold; say it in fewer words)\n")
            continue
        dropped = len(messages) + 1 - len(kept)
        if dropped:
            output.write(f"(the {dropped} oldest message(s) no longer fit and are forgotten)\n")
        messages = kept
        output.write(ASSISTANT_PREFIX)
        answer = ""
        for piece in generator.stream(generator.chat_prompt_ids(messages), SamplingOptions()):
            if isinstance(piece, str):
                output.write(piece)
                output.flush()
            else:
                answer = piece.text
        output.write("\n")
        messages.append({"role": "assistant", "content": answer})
