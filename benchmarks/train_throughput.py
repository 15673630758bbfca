"""Training throughput: ludwig_llm's finetune loop against a plain transformers `Trainer` + peft script.

Both train the same base model with the same LoRA adapter, on the same rows, with the same global
batch size, optimizer (AdamW), schedule (cosine, 3% warm-up), gradient clipping and number of
optimizer steps. The baseline is what a transformers user writes by default: `Trainer` with
`DataCollatorForSeq2Seq` (each batch padded to its longest row) and no length grouping;
ludwig_llm batches rows of similar length (`trainer.group_by_length`, on by default). Rows are
the quickstart's record-extraction task with a random-length preamble in front of each
sentence, so lengths vary the way real prompts do and padding matters.

Each side runs in its own subprocess, so peak memory is its own: resident set size
(`resource.getrusage`) on the CPU, `torch.cuda.max_memory_allocated` on a GPU.

Reported: trained tokens per second (tokens that are not padding, prompt and target alike),
padding fraction, peak memory, final training loss, and the ratios ludwig_llm / baseline.

ludwig_llm runs in variants (`--sides`): `ludwig_llm` (the defaults: length grouping, logits only at label
positions), `full_logits` (the same with the LM head over every position, what the label-position loss saves),
`bf16` (`precision: bf16`, which is fp32 on a CPU without native bf16) and `packed_bf16` (the same with
`trainer.packing: true`). `bf16` against `packed_bf16` is what packing alone changes: its speed, and the final loss
(the goal: within 2% of the unpacked run's, at the same precision).

MFU. FLOPs per trained token = FLOPs of the first optimizer step, counted by torch.utils.flop_counter.FlopCounterMode
(every matmul and attention of forward and backward, as run: padding, the LM head where it runs, LoRA), divided by
that step's trained (non-padding) tokens. Achieved FLOP/s = FLOPs per trained token x trained tokens/s of the other
steps (the counted step is slower and is left out of the timing). MFU = achieved / peak, the peak being a square
matmul's FLOP/s (2 n^3 per product) measured in the same run in fp32 and bf16; each variant is divided by the peak
of the dtype it computes in.

    python benchmarks/train_throughput.py                        # SmolLM2-135M-Instruct, 30 steps of 8 rows
    python benchmarks/train_throughput.py --steps 60 --batch-size 16 --model path/or/hub-id
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO_ROOT, "examples", "quickstart")
RESULT_PREFIX = "RESULT "
SIDES = ("ludwig_llm", "full_logits", "bf16", "packed_bf16", "baseline")

FILLER = ("the city council report mentioned several residents who had changed addresses during the year and "
          "this short note was copied from a longer archive of local news items about people and places").split()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="base_model: a bundled alias, a local model directory or a hub id (default: smollm2-135m-instruct).")
    parser.add_argument("--steps", type=int, default=30, help="Optimizer steps for each side (default: 30).")
    parser.add_argument("--batch-size", type=int, default=8, help="Rows per optimizer step, for both sides (default: 8).")
    parser.add_argument("--rows", type=int, default=None, help="Training rows (default: steps x batch size, one epoch).")
    parser.add_argument("--max-preamble-words", type=int, default=60,
                        help="Each row gets 0..N words of preamble, so lengths vary (default: 60; 0 = the quickstart's own rows).")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sides", default=",".join(SIDES), help=f"Comma-separated variants to run (default: all: {','.join(SIDES)}).")
    parser.add_argument("--only", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1,
                        help="Run each side this many times and keep its fastest run (default: 1). On a small shared machine "
                             "a side's speed varies by about 6%% from run to run; every side gets the same number of tries.")
    parser.add_argument("--json", help="Also write the results to this JSON file.")
    return parser.parse_args(argv)


# ------------------------------------------------------------------ shared setup


def quickstart_config() -> dict:
    import yaml

    with open(os.path.join(QUICKSTART, "config.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def make_rows(count: int, max_preamble_words: int, seed: int):
    """Quickstart rows (sentence, record), cycled to ``count``, each with a random-length preamble."""
    import pandas as pd

    base = pd.read_csv(os.path.join(QUICKSTART, "data.csv"), dtype=str, keep_default_na=False)
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        row = base.iloc[i % len(base)]
        words = rng.randint(0, max_preamble_words) if max_preamble_words else 0
        preamble = " ".join(rng.choice(FILLER) for _ in range(words))
        sentence = f"({preamble}) {row['sentence']}" if preamble else row["sentence"]
        rows.append({"sentence": sentence, "record": row["record"]})
    return pd.DataFrame(rows)


def device_name() -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"


def peak_memory_mb() -> float:
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def lora_settings(config: dict) -> dict:
    adapter = config["adapter"]
    return {"r": adapter.get("r", 8), "alpha": adapter.get("alpha", 16), "dropout": adapter.get("dropout", 0.05),
            "target_modules": adapter.get("target_modules")}


# ------------------------------------------------------------------ ludwig_llm


def count_first_step(probe: dict) -> None:
    """Count the first optimizer step's FLOPs (FlopCounterMode) and time, and its trained tokens, into `probe`."""
    from torch.utils.flop_counter import FlopCounterMode

    from ludwig_llm.trainers import finetune

    original = finetune.FineTuneRecipe.train_step

    def train_step(recipe, micro_batches):
        if probe:
            return original(recipe, micro_batches)
        started = time.time()
        with FlopCounterMode(display=False) as counter:
            loss = original(recipe, micro_batches)
        probe.update(flops=counter.get_total_flops(), seconds=time.time() - started,
                     tokens=sum(recipe.lengths[i] for batch in micro_batches for i in batch),
                     compute_dtype=str(recipe.strategy.precision.compute_dtype).replace("torch.", ""))
        return loss

    finetune.FineTuneRecipe.train_step = train_step


def run_ludwig(args, variant: str = "ludwig_llm") -> dict:
    import tempfile

    from ludwig_llm.api import LudwigLLM
    from ludwig_llm.data.packing import first_fit_decreasing
    from ludwig_llm.trainers import finetune
    from ludwig_llm.trainers.finetune import global_batches
    from ludwig_llm.trainers.label_loss import TrainingLoss

    if variant == "full_logits":
        finetune.TrainingLoss = lambda model: TrainingLoss(model, enabled=False)
    probe: dict = {}
    count_first_step(probe)
    config = quickstart_config()
    config["base_model"] = args.model
    config["trainer"] = {"type": "finetune", "max_steps": args.steps, "batch_size": args.batch_size,
                         "learning_rate": args.learning_rate, "seed": args.seed, "logging_steps": 1}
    if variant in ("bf16", "packed_bf16"):
        config["trainer"].update(precision="bf16", packing=variant == "packed_bf16")
    config["preprocessing"] = {"split": {"type": "random", "probabilities": [1.0, 0.0, 0.0]}, "cache": False}
    rows = make_rows(args.rows or args.steps * args.batch_size, args.max_preamble_words, args.seed)

    with tempfile.TemporaryDirectory(prefix="train_throughput_") as output:
        model = LudwigLLM(config)
        result = model.train(dataset=rows, output_directory=output, skip_save_model=True)
    statistics = result.training_statistics

    # The rows the loop trained on, batch by batch, exactly as it drew them.
    from ludwig_llm.data.pipeline import prepare_data
    from ludwig_llm.models.loader import load_tokenizer
    from ludwig_llm.models.resolve import resolve_base_model

    tokenizer = load_tokenizer(resolve_base_model(args.model))
    encoded = prepare_data(model.config, tokenizer, dataset=rows, use_cache=False, progress=False).train
    lengths = encoded.lengths()
    trainer = model.config.trainer
    trained, padded, steps, epoch = 0, 0, 0, 0
    while steps < statistics["total_steps"]:
        for batch in global_batches(lengths, trainer.batch_size, trainer.seed, epoch, trainer.group_by_length):
            if steps == statistics["total_steps"]:
                break
            batch_lengths = [lengths[i] for i in batch]
            trained += sum(batch_lengths)
            if trainer.packing:  # the packs, each padded to the longest pack (the loop's capacity rule)
                packs = first_fit_decreasing(batch_lengths, max(batch_lengths), trainer.packing_max_sequences_per_pack)
                padded += max(sum(batch_lengths[i] for i in pack) for pack in packs) * len(packs)
            else:
                padded += max(batch_lengths) * len(batch_lengths)
            steps += 1
        epoch += 1
    timed_tokens, timed_seconds = trained - probe["tokens"], statistics["train_seconds"] - probe["seconds"]
    return {
        "steps": statistics["total_steps"],
        "seconds": statistics["train_seconds"],
        "trained_tokens": trained,
        "padded_tokens": padded,
        "final_loss": statistics["steps"][-1]["loss"],
        "first_loss": statistics["steps"][0]["loss"],
        "peak_memory_mb": peak_memory_mb(),
        "device": device_name(),
        # the counted first step excluded (FlopCounterMode slows it)
        "timed_tokens_per_second": timed_tokens / timed_seconds,
        "flops_per_token": probe["flops"] / probe["tokens"],
        "compute_dtype": probe["compute_dtype"],
    }


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a square matmul in this process's threads: the peak MFU is measured against."""
    import torch

    dtype = getattr(torch, dtype_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = torch.randn(size, size, dtype=dtype, device=device), torch.randn(size, size, dtype=dtype, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


# ------------------------------------------------------------------ plain transformers + peft


def run_baseline(args) -> dict:
    """What a transformers user writes: tokenize, Trainer, DataCollatorForSeq2Seq, no length grouping."""
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from ludwig_llm.models.resolve import resolve_base_model  # only to find the bundled model's files

    config = quickstart_config()
    path = resolve_base_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    template = config["prompt"]["template"]
    rows = make_rows(args.rows or args.steps * args.batch_size, args.max_preamble_words, args.seed)

    def encode(row):
        prompt = tokenizer(template.replace("{__sample__}", row["sentence"]))["input_ids"]
        target = tokenizer(row["record"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return {"input_ids": prompt + target, "attention_mask": [1] * (len(prompt) + len(target)),
                "labels": [-100] * len(prompt) + target}

    dataset = datasets.Dataset.from_list([encode(row) for row in rows.to_dict("records")])

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if bf16 else torch.float32)
    lora = lora_settings(config)
    model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                             target_modules=lora["target_modules"], task_type="CAUSAL_LM"))

    class CountingCollator(DataCollatorForSeq2Seq):
        trained = padded = 0

        def __call__(self, features, return_tensors=None):
            batch = super().__call__(features, return_tensors)
            CountingCollator.trained += int(batch["attention_mask"].sum())
            CountingCollator.padded += int(batch["attention_mask"].numel())
            return batch

    training_args = TrainingArguments(
        output_dir=os.path.join("/tmp", f"train_throughput_baseline_{os.getpid()}"),
        per_device_train_batch_size=args.batch_size, max_steps=args.steps, learning_rate=args.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=math.ceil(0.03 * args.steps), weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=1, save_strategy="no", report_to=[], seed=args.seed, train_sampling_strategy="random",
        dataloader_num_workers=0, use_cpu=not cuda, bf16=bf16, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset,
                      data_collator=CountingCollator(tokenizer, padding=True, label_pad_token_id=-100))
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "steps": trainer.state.global_step,
        "seconds": seconds,
        "trained_tokens": CountingCollator.trained,
        "padded_tokens": CountingCollator.padded,
        "final_loss": losses[-1] if losses else None,
        "peak_memory_mb": peak_memory_mb(),
        "device": device_name(),
    }


# ------------------------------------------------------------------ driver


def run_side(name: str, argv) -> dict:
    completed = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--only", name],
                               capture_output=True, text=True, cwd=REPO_ROOT)
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    sys.stderr.write(completed.stderr[-5000:])
    raise SystemExit(f"{name} failed (exit code {completed.returncode})")


def report(results: dict, args) -> str:
    lines = [f"model {args.model}, {args.steps} steps x {args.batch_size} rows, LoRA, on {next(iter(results.values()))['device']}",
             f"{'':<12} {'tokens/s':>10} {'trained tok':>12} {'padding':>8} {'seconds':>8} {'peak MB':>9} {'last loss':>9}"]
    for name, r in results.items():
        r["tokens_per_second"] = r["trained_tokens"] / r["seconds"]
        lines.append(f"{name:<12} {r['tokens_per_second']:>10.1f} {r['trained_tokens']:>12} "
                     f"{1 - r['trained_tokens'] / r['padded_tokens']:>7.1%} {r['seconds']:>8.1f} "
                     f"{r['peak_memory_mb']:>9.0f} {r['final_loss']:>9.4f}")
    return "\n".join(lines)


def mfu_report(results: dict, peaks: dict) -> str:
    lines = [f"matmul peak (same run): fp32 {peaks['float32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bfloat16'] / 1e9:.0f} GFLOP/s"]
    for name, r in results.items():
        if "flops_per_token" not in r:
            continue
        achieved = r["flops_per_token"] * r["timed_tokens_per_second"]
        r["mfu"] = achieved / peaks[r["compute_dtype"]]
        lines.append(f"{name:<12} {r['flops_per_token'] / 1e6:>8.0f} MFLOP/token x {r['timed_tokens_per_second']:.1f} tokens/s "
                     f"= {achieved / 1e9:.1f} GFLOP/s, MFU {r['mfu']:.1%} of the {r['compute_dtype']} peak, first loss {r['first_loss']:.4f}")
    base = results.get("baseline")
    for name, r in results.items():
        if base and name != "baseline":
            lines.append(f"ratio {name}/baseline: tokens/s {r['tokens_per_second'] / base['tokens_per_second']:.2f}x, "
                         f"peak memory {r['peak_memory_mb'] / base['peak_memory_mb']:.2f}x, "
                         f"final loss {r['final_loss'] / base['final_loss']:.3f}x")
    if "bf16" in results and "packed_bf16" in results:
        packed, unpacked = results["packed_bf16"], results["bf16"]
        lines.append(f"packing (packed_bf16 against bf16): tokens/s {packed['tokens_per_second'] / unpacked['tokens_per_second']:.2f}x, "
                     f"final loss {packed['final_loss']:.4f} against {unpacked['final_loss']:.4f} "
                     f"({abs(packed['final_loss'] / unpacked['final_loss'] - 1):.1%} apart)")
    if "ludwig_llm" in results and "full_logits" in results:
        lines.append("label-position loss: tokens/s (timed steps) "
                     f"{results['ludwig_llm']['timed_tokens_per_second'] / results['full_logits']['timed_tokens_per_second']:.2f}x "
                     f"the full logits, FLOPs/token {results['ludwig_llm']['flops_per_token'] / results['full_logits']['flops_per_token']:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.only:
        os.environ.setdefault("TQDM_DISABLE", "1")
        result = run_baseline(args) if args.only == "baseline" else run_ludwig(args, args.only)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    peaks = {name: matmul_peak(name) for name in ("float32", "bfloat16")}
    results = {name: max((run_side(name, argv) for _ in range(args.repeats)), key=lambda r: r["trained_tokens"] / r["seconds"])
               for name in args.sides.split(",")}
    print(report(results, args))
    print(mfu_report(results, peaks))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "results": results, "matmul_peaks": peaks}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
