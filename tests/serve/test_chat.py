"""`ludwig_llm chat` with stdin piped in: answers equal the model's greedy chat answers, `/reset` forgets the
conversation, and the oldest turns are dropped when the prompt would grow past its budget."""

from __future__ import annotations

import subprocess
import sys

from ludwig_llm.serve.completion import SamplingOptions


def chat_cli(model_dir, text, *extra):
    return subprocess.run([sys.executable, "-m", "ludwig_llm", "chat", "--model_path", model_dir, *extra], input=text,
                          capture_output=True, text=True, timeout=300)


def answers(out: str):
    return [line.split("assistant: ", 1)[1] for line in out.splitlines() if "assistant: " in line]


def test_chat_answers_resets_and_truncates(trained_model_dir, served_model):
    generator = served_model.generator
    hello = [{"role": "user", "content": "Hello"}]
    first = generator.complete(generator.chat_prompt_ids(hello), SamplingOptions()).text
    follow_up = hello + [{"role": "assistant", "content": first}, {"role": "user", "content": "Where is Paris?"}]
    second = generator.complete(generator.chat_prompt_ids(follow_up), SamplingOptions()).text
    alone = generator.complete(generator.chat_prompt_ids(follow_up[-1:]), SamplingOptions()).text
    assert second != alone  # the history changes the answer, so a forgotten history would show

    result = chat_cli(trained_model_dir, "Hello\nWhere is Paris?\n/reset\nWhere is Paris?\n")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert answers(result.stdout) == [first, second, alone], result.stdout
    assert "(conversation reset)" in result.stdout

    # a budget that holds one exchange but not two: the first turns are dropped before the second question
    budget = len(generator.chat_prompt_ids(follow_up[-1:])) + 2
    result = chat_cli(trained_model_dir, "Hello\nWhere is Paris?\n/exit\n", "--max_history_tokens", str(budget))
    assert "oldest message(s) no longer fit" in result.stdout, result.stdout
    assert answers(result.stdout)[1] == alone
