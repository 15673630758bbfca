#!/usr/bin/env bash
# One-GPU check, under 5 minutes: QLoRA (4-bit) + bf16 + packing on the quickstart example, prediction with the
# trained adapter, prediction throughput against a one-row generate loop, and a one-worker FSDP smoke on Ray.
# Every stage prints its seconds and figures; any failure stops the script with a non-zero exit.
#
#   bash benchmarks/gpu_check.sh                  # on a machine with one CUDA GPU
#   GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh  # the same commands on the CPU (no 4-bit, no GPU), short runs:
#                                                 # checks the script and the commands, not GPU speed
#
# Attention: transformers' default for the model (SDPA; flash-attention 2 when `flash_attn` is installed and
# the model supports it is NOT chosen automatically); the script prints which packages are present.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
CPU="${GPU_CHECK_CPU:-0}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

stage() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }
seconds_since() { echo $(( $(date +%s) - $1 )); }

stage "environment"
python - <<'EOF'
import importlib.util, torch, transformers
print(f"torch {torch.__version__}  transformers {transformers.__version__}  cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"gpu: {torch.cuda.get_device_name(0)}  bf16 supported: {torch.cuda.is_bf16_supported()}")
for name in ("bitsandbytes", "flash_attn", "liger_kernel", "ray", "deepspeed"):
    print(f"{name}: {'installed' if importlib.util.find_spec(name) else 'missing'}")
EOF
if [[ "$CPU" != "1" ]]; then
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU: run with GPU_CHECK_CPU=1 for the CPU variant')"
  QUANTIZATION=$'quantization:\n  bits: 4'
  STEPS=24            # the quickstart's one epoch (96 rows, batch 4)
  USE_GPU=true
else
  QUANTIZATION=""     # bitsandbytes 4-bit needs a GPU
  STEPS=3
  USE_GPU=false
fi

# The quickstart config, with the fast-training settings added (the trainer block is replaced as a whole).
make_config() {  # $1: output file, $2: extra YAML appended
  python - "$1" "$STEPS" "$2" <<'EOF'
import sys, yaml
path, steps, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = yaml.safe_load(open("examples/quickstart/config.yaml"))
config["trainer"] = {"type": "finetune", "max_steps": steps, "batch_size": 4, "learning_rate": 0.001,
                     "precision": "bf16", "packing": True, "eval_steps": steps}
config.update(yaml.safe_load(extra) or {})
yaml.safe_dump(config, open(path, "w"), sort_keys=False)
EOF
}

stage "QLoRA 4-bit + bf16 + packing training on the quickstart"
make_config "$WORK/qlora.yaml" "$QUANTIZATION"
cat "$WORK/qlora.yaml"
start=$(date +%s)
ludwig_llm train --config "$WORK/qlora.yaml" --dataset examples/quickstart/data.csv --output_directory "$WORK/results" \
  --experiment_name qlora
RUN="$(ls -d "$WORK"/results/qlora_* | head -n 1)"
echo "training took $(seconds_since "$start") s; run directory $RUN"
python - "$RUN" <<'EOF'
import json, os, sys
stats = json.load(open(os.path.join(sys.argv[1], "training_statistics.json")))
print("training statistics:", json.dumps(stats)[:600])
EOF

stage "prediction with the trained adapter"
start=$(date +%s)
ludwig_llm predict --model_path "$RUN/model" --dataset examples/quickstart/data.csv --output_directory "$WORK/predict"
echo "prediction took $(seconds_since "$start") s"
find "$WORK/predict" -name "*.csv" | head -n 1 | xargs -r head -n 4

stage "prediction throughput: batched vs one-row generate loop"
if [[ "$CPU" != "1" ]]; then
  python benchmarks/predict_throughput.py --rows 64 --batch-size 32 --max-new-tokens 32 --repeats 2
else
  python benchmarks/predict_throughput.py --rows 4 --batch-size 4 --max-new-tokens 4
fi

stage "FSDP smoke: Ray backend, strategy fsdp, 1 worker"
make_config "$WORK/fsdp.yaml" "$(printf 'backend:\n  type: ray\n  trainer:\n    num_workers: 1\n    use_gpu: %s\n    strategy: fsdp\n' "$USE_GPU")"
start=$(date +%s)
ludwig_llm train --config "$WORK/fsdp.yaml" --dataset examples/quickstart/data.csv --output_directory "$WORK/results" \
  --experiment_name fsdp
echo "FSDP smoke took $(seconds_since "$start") s"
ls "$(ls -d "$WORK"/results/fsdp_* | head -n 1)"

echo
echo "gpu_check: all stages passed (work directory $WORK)"
