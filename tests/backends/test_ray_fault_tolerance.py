"""Fault tolerance on the Ray backend: a training worker process dies mid-run, Ray Train replaces the worker
group, and training continues from the last checkpoint (not from step 0) to the end.

The failure is injected with the backend's test hook (`LUDWIG_LLM_RAY_FAIL_ONCE`): worker 1 calls
`os._exit(1)` when it reaches the step-4 checkpoint, once the step-2 checkpoint is committed, and only once
(a marker file). About a minute on 2 CPU cores: the worker group starts twice.
"""

from __future__ import annotations

import json
import os

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster and its workers

from ludwig_llm import results  # noqa: E402
from ludwig_llm.api import LudwigLLM  # noqa: E402
from ludwig_llm.backends.ray_session import FAIL_ONCE_ENV  # noqa: E402
from ludwig_llm.results import list_checkpoints  # noqa: E402

STEPS = 6


def config_for(make_config, max_failures: int) -> dict:
    config = make_config(trainer={"max_steps": STEPS, "checkpoint_steps": 2, "checkpoints_to_keep": 2})
    config["backend"] = {"type": "ray", "trainer": {"num_workers": 2, "max_failures": max_failures}}
    return config


def test_a_killed_worker_is_replaced_and_training_resumes_from_the_last_checkpoint(
        ray_cluster, make_config, small_dataset, tmp_path, monkeypatch, capfd):
    marker = tmp_path / "worker-killed"
    monkeypatch.setenv(FAIL_ONCE_ENV, f"1:4:{marker}")
    result = LudwigLLM(config_for(make_config, max_failures=1)).train(small_dataset, output_directory=str(tmp_path / "out"))

    assert marker.read_text().startswith("rank 1 exited at step 4"), "the worker was not killed"
    statistics = result.training_statistics
    print(f"\nrestored from: {statistics['distributed']['restored_from']}")
    # The replacement worker group started from the step-2 checkpoint, not from scratch ...
    assert statistics["distributed"]["restored_from"] == {"source": "ray_train", "checkpoint": "step-00000002", "step": 2}
    # ... and finished: every step's loss is recorded once, the two from before the failure included.
    assert statistics["total_steps"] == STEPS
    assert [entry["step"] for entry in statistics["steps"]] == list(range(1, STEPS + 1))
    output = capfd.readouterr()
    assert "continuing from checkpoint step-00000002 (step 2, ray_train)" in output.out + output.err

    run = result.run_directory
    names = [os.path.basename(p) for p in list_checkpoints(os.path.join(run, results.CHECKPOINTS_DIR))]
    assert names == ["step-00000004", "step-00000006"]
    with open(os.path.join(run, results.MODEL_DIR, "ludwig_llm_model.json"), encoding="utf-8") as f:
        assert json.load(f)["weights"] == "adapter"
    LudwigLLM.load(os.path.join(run, results.MODEL_DIR))
