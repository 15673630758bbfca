"""The tutorials and the page on using a trained model describe what the code does: the files a run writes, the
adapters that merge, the retrieved context of the few-shot example, and the Python API's verbs."""

from __future__ import annotations

import re

import pandas as pd

from ludwig_llm import results
from ludwig_llm.api import RUN_CONFIG
from ludwig_llm.backends.ray import RAY_DIR
from ludwig_llm.data import retrieval
from ludwig_llm.data.prompt import PromptRenderer
from ludwig_llm.models import bundle
from ludwig_llm.plots import LEARNING_CURVES
from ludwig_llm.schema import load_config
from ludwig_llm.schema.registry import adapter_registry
from ludwig_llm.tracking import TENSORBOARD_DIR
from tests.docs.site_helpers import REPO, article_of, page_file, text_blocks, text_of


def test_using_a_trained_model_names_the_files_the_code_writes(site):
    article = article_of(page_file(site, "user_guide/using_a_trained_model"))
    names = [RUN_CONFIG, results.RUN_STATE, results.MODEL_DIR, results.CHECKPOINTS_DIR, results.CHECKPOINT_PREFIX,
             results.TRAINING_STATISTICS, results.TEST_STATISTICS, results.DESCRIPTION, LEARNING_CURVES, TENSORBOARD_DIR,
             RAY_DIR, bundle.CONFIG_FILE, bundle.MANIFEST_FILE, bundle.MERGED_DIR, retrieval.RETRIEVAL_DIR,
             retrieval.EXAMPLES_FILE, retrieval.EMBEDDINGS_FILE, retrieval.METADATA_FILE, "predictions.parquet"]
    shown = set(re.findall(r"<code>([^<]*)</code>", article))
    missing = [name for name in names if not any(name in code for code in shown)]
    assert not missing, f"the page does not name {missing}"


def test_merge_table_is_the_adapter_registry(site):
    article = article_of(page_file(site, "user_guide/using_a_trained_model"))
    rows = dict(re.findall(r"<tr>\s*<td><code>(\w+)</code>[^<]*</td>\s*<td>([^<]*)</td>", article))
    assert list(rows) == adapter_registry.names()
    for name, cls in adapter_registry.items():
        assert rows[name].startswith("yes") == cls.mergeable, f"{name}: the page says {rows[name]!r}"
    assert {name for name, answer in rows.items() if answer.startswith("no")} >= {"prefix_tuning", "prompt_tuning", "p_tuning"}


def test_few_shot_page_shows_the_prompt_the_retriever_builds(site):
    """The rendered prompt on the page is the first training row's, with the examples semantic retrieval picks."""
    config = load_config(REPO / "examples/icl_sentiment/config.yaml")
    rows = pd.read_csv(REPO / "examples/icl_sentiment/reviews.csv")
    train = rows[rows["split"] == "train"].reset_index(drop=True)
    retriever = retrieval.build_retriever(config.prompt.retrieval, train, "review", "sentiment", seed=config.trainer.seed)
    expected = PromptRenderer(config, retriever).render_all(train.head(1))[0]
    shown = [block for block in text_blocks(article_of(page_file(site, "tutorials/few_shot_retrieval")))
             if block.startswith(config.prompt.task)]
    assert [block.rstrip("\n") for block in shown] == [expected.rstrip("\n")]


def test_api_reference_documents_every_verb(site):
    article = article_of(page_file(site, "reference/python_api"))
    for verb in ("train", "experiment", "preprocess", "load", "predict", "evaluate"):
        assert f'id="ludwig_llm.api.LudwigLLM.{verb}"' in article, f"LudwigLLM.{verb} is not in the API reference"
    for result in ("TrainResult", "PredictResult", "EvaluateResult"):
        assert f'id="ludwig_llm.api.{result}"' in article
    assert "Preprocess, train and save a run directory" in text_of(article)  # the docstring itself is rendered


def test_tutorials_are_in_the_navigation(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    for page in ("tutorials/cpu_to_gpu_to_cluster", "tutorials/few_shot_retrieval", "tutorials/fine_tune_or_prompt"):
        assert f"{page}.html" in index, f"{page} is not in the navigation"
