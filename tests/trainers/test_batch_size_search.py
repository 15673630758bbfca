"""`batch_size: auto` / `eval_batch_size: auto`: a real search on the model and rows, reported and saved."""

import os
import time

import pytest
import torch
import yaml

from ludwig_llm.api import LudwigLLM
from ludwig_llm.inference.batch_size_search import search_batch_size
from ludwig_llm.results import MODEL_DIR


def test_search_stops_at_out_of_memory_and_picks_the_fastest_that_fits():
    seconds_per_batch = {1: 0.02, 2: 0.024, 4: 0.03, 8: 0.2}  # 4 rows in 0.03 s is the best rate

    def run(size):  # time is simulated by sleeping
        if size >= 16:
            raise torch.OutOfMemoryError("CUDA out of memory")
        time.sleep(seconds_per_batch[size])

    chosen, trials = search_batch_size(run, rows_available=100, device=torch.device("cpu"))
    assert chosen == 4
    sizes = [t["batch_size"] for t in trials]
    assert sizes == [1, 2, 4, 8, 16] and trials[-1]["out_of_memory"]


def test_search_never_exceeds_the_rows_available():
    tried = []
    chosen, trials = search_batch_size(lambda size: tried.append(size), rows_available=5, device=torch.device("cpu"))
    assert max(tried) <= 5 and chosen in (1, 2, 4)


def test_search_when_nothing_fits_is_an_out_of_memory_error():
    def run(size):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError, match="not even 1 row"):
        search_batch_size(run, rows_available=10, device=torch.device("cpu"))


def test_auto_batch_sizes_train_are_reported_and_saved(make_config, small_dataset, tmp_path):
    config = make_config(trainer={"batch_size": "auto", "eval_batch_size": "auto", "max_steps": 2})
    result = LudwigLLM(config).train(dataset=small_dataset, output_directory=str(tmp_path))
    search = result.training_statistics["batch_size_search"]
    assert isinstance(search["batch_size"], int) and isinstance(search["eval_batch_size"], int)
    assert search["batch_size"] in [t["batch_size"] for t in search["trials"] if "rows_per_second" in t]
    assert result.training_statistics["total_steps"] == 2
    with open(os.path.join(result.run_directory, MODEL_DIR, "ludwig_llm_config.yaml"), encoding="utf-8") as f:
        saved = yaml.safe_load(f)["trainer"]
    assert (saved["batch_size"], saved["eval_batch_size"]) == (search["batch_size"], search["eval_batch_size"])
    predictions = LudwigLLM.load(os.path.join(result.run_directory, MODEL_DIR)).predict(
        small_dataset.head(2), output_directory=None).predictions
    assert len(predictions) == 2
