"""`ludwig_llm serve`: /predict latency for one row, and rows/s of N concurrent vs N sequential requests.

A live server (uvicorn in a thread, the same app `ludwig_llm serve` runs) answers real HTTP requests;
concurrent requests are merged by the model thread into one batched prediction, and every concurrent
answer is checked against the sequential answer for the same row. Run from the repo root:

    python benchmarks/serve_throughput.py                       # the quickstart prompt on SmolLM2-135M (trainer none)
    python benchmarks/serve_throughput.py --model_path results/experiment_run/model --requests 16

Without --model_path a model directory is made with trainer `none` (no training) from the
quickstart config on SmolLM2-135M-Instruct when available, else on a tiny random Llama.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "examples", "quickstart")


def make_model_directory(workdir: str) -> str:
    from ludwig_llm.api import LudwigLLM
    from ludwig_llm.models.resolve import resolve_base_model

    with open(os.path.join(QUICKSTART, "config.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    try:
        resolve_base_model(config["base_model"])
    except Exception as error:  # noqa: BLE001 - any failure falls back to a tiny model
        print(f"SmolLM2 unavailable ({error}); using a tiny random Llama.")
        from tests.tiny_models import make_tiny_llama

        config["base_model"] = make_tiny_llama(os.path.join(workdir, "tiny"))
    config["trainer"] = {"type": "none"}
    config.pop("adapter", None)
    result = LudwigLLM(config).train(dataset=os.path.join(QUICKSTART, "data.csv"), output_directory=workdir)
    return os.path.join(result.run_directory, "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", help="A trained model directory (default: made with trainer none, see above).")
    parser.add_argument("--requests", type=int, default=16, help="Requests per measurement (default: 16).")
    parser.add_argument("--latency_repeats", type=int, default=10, help="One-row requests timed for the latency (default: 10).")
    args = parser.parse_args()

    from ludwig_llm.serve.app import ServedModel, create_app
    from tests.serve.conftest import LiveServer

    with tempfile.TemporaryDirectory(prefix="serve_bench_") as workdir:
        model_path = args.model_path or make_model_directory(workdir)
        served = ServedModel(model_path)
        server = LiveServer(create_app(served))
        sentences = pd.read_csv(os.path.join(QUICKSTART, "data.csv"))["sentence"].tolist()[:args.requests]
        bodies = [{"sentence": s} for s in sentences]
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                client.post("/predict", json=bodies[0]).raise_for_status()  # warm-up
                latencies = []
                for i in range(args.latency_repeats):
                    started = time.perf_counter()
                    client.post("/predict", json=bodies[i % len(bodies)]).raise_for_status()
                    latencies.append(time.perf_counter() - started)

                started = time.perf_counter()
                sequential = [client.post("/predict", json=body).json() for body in bodies]
                sequential_seconds = time.perf_counter() - started

                with ThreadPoolExecutor(len(bodies)) as pool:
                    started = time.perf_counter()
                    concurrent = [r.json() for r in pool.map(lambda body: client.post("/predict", json=body), bodies)]
                    concurrent_seconds = time.perf_counter() - started
        finally:
            server.stop()
            served.close()

    same = sum(a == b for a, b in zip(sequential, concurrent))
    sequential_rate, concurrent_rate = len(bodies) / sequential_seconds, len(bodies) / concurrent_seconds
    print(f"model: {model_path}")
    print(f"/predict latency, one row: median {statistics.median(latencies) * 1000:.0f} ms "
          f"(min {min(latencies) * 1000:.0f}, max {max(latencies) * 1000:.0f}, {len(latencies)} requests)")
    print(f"{len(bodies)} sequential requests: {sequential_seconds:.2f} s, {sequential_rate:.2f} rows/s")
    print(f"{len(bodies)} concurrent requests: {concurrent_seconds:.2f} s, {concurrent_rate:.2f} rows/s")
    print(f"concurrent / sequential throughput: {concurrent_rate / sequential_rate:.2f}x; "
          f"answers identical: {same}/{len(bodies)}")


if __name__ == "__main__":
    main()
