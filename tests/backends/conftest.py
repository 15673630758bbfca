"""A local Ray cluster shared by the tests of one module, shut down at its end."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray")

from ludwig_llm.backends.ray_cluster import quiet_ray_logs  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False, logging_level="WARNING",
             object_store_memory=256 * 1024 * 1024, runtime_env={"worker_process_setup_hook": quiet_ray_logs})
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_run(make_config, small_dataset, tmp_path_factory):
    """The local LoRA run that the Ray runs of a module are compared with."""
    from tests.backends.ray_runs import train_config, train_in_one_thread

    return train_in_one_thread(train_config(make_config), small_dataset, tmp_path_factory.mktemp("local"))
