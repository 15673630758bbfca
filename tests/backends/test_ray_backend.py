"""The Ray backend on this machine: 2 Ray Train workers (gloo) against the local backend, the run directory
that comes out, Ray Data batch prediction against local prediction, and fail-fast resource checks.

One local Ray cluster serves the module and is shut down at its end. The model and data are tiny, so the
whole module takes about a minute and a half on 2 CPU cores, most of it Ray starting worker processes.
"""

from __future__ import annotations

import json
import os
import time

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster and its workers

from ludwig_llm import results  # noqa: E402
from ludwig_llm.api import LudwigLLM  # noqa: E402
from ludwig_llm.backends import ray as ray_backend  # noqa: E402
from ludwig_llm.backends import ray_cluster  # noqa: E402
from ludwig_llm.backends.local import LocalBackend  # noqa: E402
from ludwig_llm.results import latest_checkpoint_in, list_checkpoints  # noqa: E402
from ludwig_llm.errors import UserError  # noqa: E402
from ludwig_llm.schema import load_config  # noqa: E402
from ludwig_llm.trainers.finetune import run_finetune  # noqa: E402

from tests.backends.ray_runs import LOSS_TOLERANCE, STEPS, compare_losses, losses, relative_weight_difference, train_config  # noqa: E402

RAY_BACKEND = {"type": "ray", "trainer": {"num_workers": 2}, "processor": {"num_actors": 2, "batch_size": 4}}

@pytest.fixture(scope="module")
def ray_run(ray_cluster, make_config, small_dataset, tmp_path_factory):
    return LudwigLLM(train_config(make_config, RAY_BACKEND)).train(small_dataset, output_directory=str(tmp_path_factory.mktemp("ray")))


# ---------------------------------------------------------------------------------------------
# Training


def test_two_workers_follow_the_local_loss_curve(local_run, ray_run):
    local, distributed = losses(local_run.training_statistics), losses(ray_run.training_statistics)
    assert sorted(distributed) == list(range(1, STEPS + 1))
    assert compare_losses(local, distributed, "2 workers") <= LOSS_TOLERANCE
    assert distributed[STEPS] < distributed[1], "the loss did not decrease"
    stats = ray_run.training_statistics
    assert stats["total_steps"] == STEPS
    assert stats["distributed"]["backend"] == "ray" and stats["distributed"]["workers"] == 2
    assert stats["distributed"]["restored_from"] is None


def test_the_ray_run_directory_is_a_local_one(local_run, ray_run):
    run = ray_run.run_directory
    for name in (results.MODEL_DIR, results.CHECKPOINTS_DIR, results.TRAINING_STATISTICS, "config.yaml", "description.json"):
        assert os.path.exists(os.path.join(run, name)), name
    local_model = set(os.listdir(os.path.join(local_run.run_directory, results.MODEL_DIR)))
    assert set(os.listdir(os.path.join(run, results.MODEL_DIR))) == local_model
    # Every checkpoint was mirrored as Ray Train reported it; the newest two are kept, as locally.
    names = [os.path.basename(p) for p in list_checkpoints(os.path.join(run, results.CHECKPOINTS_DIR))]
    assert names == ["step-00000004", "step-00000006"]
    latest = latest_checkpoint_in(run)
    assert set(os.listdir(latest)) == set(os.listdir(latest_checkpoint_in(local_run.run_directory)))
    with open(os.path.join(latest, "trainer_state.json"), encoding="utf-8") as f:
        assert json.load(f)["step"] == STEPS
    # Ray Train's own storage stays inside the run directory.
    assert ray_run.training_statistics["distributed"]["ray_train_run"].startswith(os.path.join(run, ray_backend.RAY_DIR))


def test_the_saved_model_loads_and_matches_the_local_one(local_run, ray_run):
    from safetensors.torch import load_file

    predictor = LudwigLLM.load(os.path.join(ray_run.run_directory, results.MODEL_DIR))
    assert predictor.config.backend.type == "ray"
    assert predictor._loaded.manifest.weights == "adapter"
    trained = load_file(os.path.join(ray_run.run_directory, results.MODEL_DIR, "adapter_model.safetensors"))
    reference = load_file(os.path.join(local_run.run_directory, results.MODEL_DIR, "adapter_model.safetensors"))
    assert trained.keys() == reference.keys()
    for part in ("lora_A", "lora_B"):
        assert relative_weight_difference(trained, reference, part) < 0.01, part


# ---------------------------------------------------------------------------------------------
# Batch prediction


def _rows_of_different_lengths(small_dataset):
    """10 rows in 3 Ray Data batches (4, 4, 2) on 2 actors; lengths that differ a lot, so each actor reorders
    its rows by length before generating and the batches finish in any order."""
    rows = small_dataset.iloc[:10].reset_index(drop=True).copy()
    rows["sentence"] = [sentence + " Later they moved again." * ((7 * i) % 5) for i, sentence in enumerate(rows["sentence"])]
    return rows


def test_ray_batch_prediction_equals_local_prediction_in_input_order(ray_run, small_dataset, tmp_path):
    rows = _rows_of_different_lengths(small_dataset)
    predictor = LudwigLLM.load(os.path.join(ray_run.run_directory, results.MODEL_DIR))
    local = LocalBackend(predictor.config).predict(predictor._loaded, rows)  # the same model, in this process
    on_ray = LudwigLLM.load(os.path.join(ray_run.run_directory, results.MODEL_DIR))
    distributed = on_ray.predict(rows, output_directory=str(tmp_path))  # backend ray: Ray Data
    assert not on_ray._loaded.built.is_loaded, "the driver loaded the model that only the actors use"
    assert list(distributed.predictions.columns) == list(local.columns) == ["record_response"]
    print("\n" + "\n".join(f"{i}: {a!r} | {b!r}" for i, (a, b) in
                            enumerate(zip(local["record_response"], distributed.predictions["record_response"]))))
    assert distributed.predictions["record_response"].tolist() == local["record_response"].tolist()
    assert len(set(local["record_response"])) > 1, "all predictions alike: the order check would prove little"
    assert sorted(os.listdir(distributed.output_directory)) == ["predictions.csv", "predictions.parquet"]
    import pandas as pd

    written = pd.read_csv(os.path.join(distributed.output_directory, "predictions.csv"), keep_default_na=False)
    assert written["record_response"].tolist() == local["record_response"].tolist()


def test_ray_text_evaluation_runs_on_the_actors_and_matches_local(ray_run, small_dataset, tmp_path):
    """Loss, perplexity and next-token accuracy are computed by the actors too: the driver never loads the model."""
    rows = _rows_of_different_lengths(small_dataset)
    model_dir = os.path.join(ray_run.run_directory, results.MODEL_DIR)
    predictor = LudwigLLM.load(model_dir)
    local_predictions, local = LocalBackend(predictor.config).evaluate(predictor._loaded, rows)
    on_ray = LudwigLLM.load(model_dir)
    evaluation = on_ray.evaluate(rows, output_directory=str(tmp_path))
    assert not on_ray._loaded.built.is_loaded, "the driver loaded the model to evaluate"
    distributed = evaluation.statistics["record"]
    assert set(distributed) == set(local["record"])
    for name in ("loss", "perplexity", "next_token_accuracy"):
        assert distributed[name] == pytest.approx(local["record"][name], rel=1e-4), name
    for name in ("bleu", "exact_match", "rows"):
        assert distributed[name] == local["record"][name], name
    assert evaluation.predictions["record_response"].tolist() == local_predictions["record_response"].tolist()


# ---------------------------------------------------------------------------------------------
# Resources: fail fast, with what was asked and what the cluster has


def test_more_workers_than_the_cluster_has_fail_fast(ray_cluster, make_config, tmp_path):
    cpus = int(ray.cluster_resources()["CPU"])
    config = load_config(train_config(make_config, {"type": "ray", "trainer": {"num_workers": cpus + 1}}))
    started = time.time()
    with pytest.raises(UserError) as error:
        ray_backend.RayBackend(config).run_workers(run_finetune, None, str(tmp_path), None)
    assert time.time() - started < 10
    message = str(error.value)
    assert f"{cpus + 1} × {{CPU: 1}} = {cpus + 1} CPU" in message and f"has {cpus} CPU" in message


def test_gpus_on_a_cluster_without_gpus_fail_fast(ray_cluster, make_config, tmp_path):
    config = load_config(train_config(make_config, {"type": "ray", "trainer": {"num_workers": 2, "use_gpu": True}}))
    with pytest.raises(UserError, match=r"2 × \{GPU: 1\} = 2 GPU, but the Ray cluster has 0 GPU"):
        ray_backend.RayBackend(config).run_workers(run_finetune, None, str(tmp_path), None)


def test_too_many_prediction_actors_fail_fast(ray_cluster, make_config, ray_run):
    config = load_config(train_config(make_config, {"type": "ray", "processor": {"num_actors": 2, "num_gpus_per_actor": 0.5}}))
    with pytest.raises(UserError, match=r"batch prediction asks for 2 × \{CPU: 1, GPU: 0.5\} = 1 GPU"):
        saved = LudwigLLM.load(os.path.join(ray_run.run_directory, results.MODEL_DIR))._loaded
        ray_backend.RayBackend(config).predict_from_ids(saved, [[1, 2, 3]], 4)


# ---------------------------------------------------------------------------------------------
# Without a cluster


def test_resource_check_arithmetic():
    check = ray_cluster.check_cluster_resources
    check("training", 2, {"CPU": 1.0}, cluster={"CPU": 2.0}, nodes=[{"CPU": 2.0}])
    with pytest.raises(UserError, match="no node of the Ray cluster has that much"):
        check("training", 2, {"GPU": 2.0}, cluster={"GPU": 4.0}, nodes=[{"GPU": 1.0}] * 4)
    # An autoscaling cluster may still add a larger node: only the total is checked.
    check("training", 2, {"GPU": 2.0}, cluster={"GPU": 4.0}, nodes=[{"GPU": 1.0}] * 4, autoscaling=True)
    with pytest.raises(UserError, match=r"asks for 3 × \{CPU: 4, GPU: 1\} = 12 CPU, but the Ray cluster has 8 CPU"):
        check("training", 3, {"CPU": 4.0, "GPU": 1.0}, cluster={"CPU": 8.0, "GPU": 4.0}, nodes=[])


def test_worker_resources_follow_ray_train():
    def options(**values):
        return load_config({"base_model": "x", "input_features": [{"name": "a", "type": "text"}],
                            "output_features": [{"name": "b", "type": "text"}],
                            "backend": {"type": "ray", "trainer": values}}).backend.trainer

    assert ray_cluster.worker_resources(options()) == {"CPU": 1.0}
    assert ray_cluster.worker_resources(options(use_gpu=True)) == {"GPU": 1.0}
    assert ray_cluster.worker_resources(options(use_gpu=True, resources_per_worker={"CPU": 4})) == {"CPU": 4.0, "GPU": 1.0}
    assert ray_cluster.worker_resources(options(resources_per_worker={"CPU": 2, "GPU": 0})) == {"CPU": 2.0}


def test_connect_uses_the_address_or_starts_locally(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda address=None, **kwargs: calls.append((address, kwargs)))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_cluster.connect(None)  # a `ray start` cluster of this machine, else a new one with all of the machine
    assert calls[-1][0] is None and calls[-1][1]["include_dashboard"] is False
    assert "num_cpus" not in calls[-1][1]  # Ray sizes a new local cluster itself, and refuses sizes when joining one
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    ray_cluster.connect(None)
    assert calls[-1][0] == "10.0.0.1:6379"
    ray_cluster.connect("ray://head:10001")  # the config's address wins over RAY_ADDRESS
    assert calls[-1][0] == "ray://head:10001"


def test_a_user_error_in_a_worker_is_shown_as_one():
    from ray.train import WorkerGroupError

    error = WorkerGroupError("training failed", {1: UserError("base_model: no such model")})
    assert str(ray_backend._user_error_inside(error)) == "base_model: no such model"
    assert ray_backend._user_error_inside(WorkerGroupError("training failed", {0: RuntimeError("boom")})) is None


# ---------------------------------------------------------------------------------------------
# The cluster example (it cannot be started here: it is checked against the schemas instead)

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "ray_cluster")


def test_the_example_config_asks_for_gpu_workers():
    config = load_config(os.path.join(EXAMPLE, "config.yaml"))
    assert config.backend.type == "ray" and config.backend.trainer.use_gpu and config.backend.trainer.strategy.type == "ddp"
    assert ray_cluster.worker_resources(config.backend.trainer) == {"CPU": 6.0, "GPU": 1.0}
    # The example cluster can grow to 4 GPU nodes of 8 CPUs: the config fits it.
    ray_cluster.check_cluster_resources("training", config.backend.trainer.num_workers, ray_cluster.worker_resources(config.backend.trainer),
                                        cluster={"CPU": 32.0, "GPU": 4.0}, nodes=[], autoscaling=True)


def test_the_example_cluster_is_valid_for_the_ray_cluster_launcher():
    import yaml

    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    with open(os.path.join(EXAMPLE, "cluster.yaml"), encoding="utf-8") as f:
        cluster = yaml.safe_load(f)
    validate_config(prepare_config(cluster))
    assert cluster["provider"]["type"] == "aws" and cluster["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"].startswith("g")
    with pytest.raises(Exception, match="max_worker"):  # the validation does catch mistakes
        validate_config(prepare_config({**cluster, "max_worker": 4}))
