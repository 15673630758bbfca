"""Label scoring time per row: every (prompt, label) pair as its own sequence vs each prompt encoded once.

The cached way (`label_log_likelihoods(..., shared_cache=True)`, the default) runs each prompt (and the
batch's common prefix, once) through the model and scores every label as a continuation of its KV cache;
the pair-by-pair way runs the whole prompt again for every label. Both run in one process on the same
rows, in alternating order, for 2 and for 10 labels, and their scores are compared. Run from the repo root:

    python benchmarks/label_scoring_throughput.py --rows 16            # SmolLM2-135M-Instruct when installed
    python benchmarks/label_scoring_throughput.py --rows 16 --tiny     # a tiny random Llama
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.predict_throughput import TOPICS, default_model  # noqa: E402

LABELS = {
    2: ["positive", "negative"],
    10: ["sports", "politics", "science", "music", "travel", "food", "health", "business", "weather", "technology"],
}
REVIEW = "Classify this text. Answer with one label only.\nText: {x} came up again today, and people {mood} it.\nLabel:"
MOODS = ["loved", "hated", "talked about", "argued about how much they disliked"]


def prompt_ids(tokenizer, rows: int):
    texts = [REVIEW.format(x=TOPICS[i % len(TOPICS)], mood=MOODS[i % len(MOODS)]) for i in range(rows)]
    if getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True) for t in texts]
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return [tokenizer(t)["input_ids"] for t in texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or alias (default: SmolLM2-135M-Instruct if available)")
    parser.add_argument("--tiny", action="store_true", help="use a tiny random Llama")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16, help="(prompt, label) sequences per forward, as in predict")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each way, in alternating order")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ludwig_llm.inference.label_scoring import label_log_likelihoods
    from ludwig_llm.models.resolve import resolve_base_model

    if args.tiny:
        from tests.tiny_models import make_tiny_llama

        path = make_tiny_llama(tempfile.mkdtemp(prefix="tiny_llama_bench_"))
    else:
        path = resolve_base_model(args.model) if args.model else default_model()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = prompt_ids(tokenizer, args.rows)
    lengths = sorted(len(row) for row in ids)
    print(f"model: {path}  torch threads: {torch.get_num_threads()}  rows: {args.rows} x {args.repeats} repeat(s)  "
          f"batch size: {args.batch_size}  prompt tokens: min {lengths[0]} / max {lengths[-1]}")
    label_log_likelihoods(model, tokenizer, ids[:2], LABELS[2], batch_size=4, progress=False)  # warm-up

    for count, labels in LABELS.items():
        ways = {"cached": True, "pairs": False}
        seconds = {name: 0.0 for name in ways}
        scores = {}
        for repeat in range(args.repeats):
            for name in (list(ways) if repeat % 2 == 0 else list(reversed(ways))):
                start = time.perf_counter()
                scores[name] = label_log_likelihoods(model, tokenizer, ids, labels, batch_size=args.batch_size,
                                                     progress=False, shared_cache=ways[name])
                seconds[name] += time.perf_counter() - start
        per_row = {name: 1000 * s / (args.rows * args.repeats) for name, s in seconds.items()}
        gap = float(np.abs(scores["cached"] - scores["pairs"]).max())
        same = int((scores["cached"].argmax(1) == scores["pairs"].argmax(1)).sum())
        print(f"{count:2d} labels: pair by pair {per_row['pairs']:7.1f} ms/row   cached prompt {per_row['cached']:7.1f} ms/row   "
              f"speed-up {seconds['pairs'] / seconds['cached']:.2f}x   max |score gap| {gap:.1e}   "
              f"same prediction {same}/{args.rows}")


if __name__ == "__main__":
    main()
