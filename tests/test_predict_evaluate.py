"""predict / evaluate / experiment through the Python API on tiny models: greedy output equal to plain
transformers `generate`, row order kept, output directories, `split`, metrics equal to their reference
implementations, category outputs (label scoring, majority baseline), trainer `none`, and semantic
retrieval saved with the model and reused by predict."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from ludwig_llm.api import LudwigLLM
from ludwig_llm.errors import UserError
from ludwig_llm.results import DESCRIPTION, MODEL_DIR, TEST_STATISTICS, TRAINING_STATISTICS
from tests.conftest import greedy_tokens

TEMPLATE = "Sentence: {}\nRecord:"  # the prompt.template of tests.conftest.tiny_config, written out by hand
MAX_NEW_TOKENS = 8
SHORT = ["Hugo moved.", "Oslo.", "Dana left Lima.", "Chen?"]
LONG = [
    "In 2004, after many years of living in a small flat near the harbour, Hugo finally relocated to Lima with his family.",
    "Grace, who had been working for a shipping company for over a decade, moved to Kyoto in 1999 to start a new business.",
    "Cairo became home for Farid in 2011, shortly after he finished his studies and found a job at the university hospital.",
    "Elif moved to Paris in 2020.",
]
# Short and long prompts interleaved: batches are sorted by length, so a lost order would show.
MIXED = pd.DataFrame({"sentence": [s for pair in zip(SHORT, LONG) for s in pair]})
RUN_FILES = {"config.yaml", MODEL_DIR, TRAINING_STATISTICS, DESCRIPTION, TEST_STATISTICS, "predictions.parquet",
             "predictions.csv"}


def reference_responses(model, tokenizer, sentences, max_new_tokens=MAX_NEW_TOKENS):
    """Greedy `model.generate`, one unpadded prompt at a time, decoded as a user would: new tokens up to EOS."""
    texts = []
    for tokens in greedy_tokens(model, tokenizer, [TEMPLATE.format(s) for s in sentences], max_new_tokens):
        if tokenizer.eos_token_id in tokens:
            tokens = tokens[: tokens.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode(tokens, skip_special_tokens=True).strip())
    return texts


@pytest.fixture(scope="module")
def text_run(make_config, small_dataset, tmp_path_factory):
    """A LoRA run on the record task via `experiment`: a few small steps move it off the base model while its
    answers still differ from row to row (a longer run answers every row alike, hiding a lost row order)."""
    config = make_config(trainer={"max_steps": 3, "learning_rate": 0.005}, generation={"max_new_tokens": MAX_NEW_TOKENS})
    result = LudwigLLM(config).experiment(dataset=small_dataset, output_directory=str(tmp_path_factory.mktemp("text_run")))
    return result


@pytest.fixture(scope="module")
def text_model(text_run):
    return LudwigLLM.load(os.path.join(text_run.run_directory, MODEL_DIR))


@pytest.fixture(scope="module")
def peft_reference(text_run):
    """The saved adapter loaded with plain peft/transformers, independent of ludwig_llm's loader."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    model_dir = os.path.join(text_run.run_directory, MODEL_DIR)
    return AutoPeftModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(model_dir)


# ------------------------------------------------------------------ text: generation


def test_greedy_predict_equals_transformers_generate_and_keeps_row_order(text_model, peft_reference):
    model, tokenizer = peft_reference
    expected = reference_responses(model, tokenizer, MIXED.sentence)
    assert len(set(expected)) == len(expected), expected  # every row answers differently: a shuffle would show
    for batch_size in (3, 8):
        predictions = text_model.predict(MIXED, batch_size=batch_size, output_directory=None).predictions
        assert list(predictions.columns) == ["record_response"]
        assert predictions["record_response"].tolist() == expected


def test_predict_renders_and_tokenizes_prompts_as_training_does(text_model, peft_reference, monkeypatch):
    """The ids generation starts from are the prompt part of the training rows, and equal the plain tokenizer's."""
    import ludwig_llm.inference.predict as generation  # where predict calls generate
    from ludwig_llm.data.prompt import prompt_texts
    from ludwig_llm.data.tokenize import IGNORE_INDEX, encode_for_training

    _, tokenizer = peft_reference
    seen = []
    original = generation.generate

    def spy(model, tok, prompt_ids, *args, **kwargs):
        seen.extend(prompt_ids)
        return original(model, tok, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(generation, "generate", spy)
    text_model.predict(MIXED, output_directory=None)
    plain = [tokenizer(TEMPLATE.format(s))["input_ids"] for s in MIXED.sentence]
    assert seen == plain
    training = encode_for_training(prompt_texts(MIXED, tokenizer, text_model.config), ["x"] * len(MIXED), tokenizer, text_model.config)
    for ids, example in zip(plain, training.examples):
        assert example["input_ids"][: len(ids)] == ids
        assert example["labels"][: len(ids)] == [IGNORE_INDEX] * len(ids)


def test_generation_stops_at_a_configured_stop_string(text_model, peft_reference):
    model, tokenizer = peft_reference
    full = reference_responses(model, tokenizer, MIXED.sentence)
    # A character from the middle of the first answer: every answer must end before its first occurrence.
    stop = next(c for c in full[0][1:] if c.isascii() and c.isalnum())
    text_model.config.generation.stop_strings = [stop]
    try:
        got = text_model.predict(MIXED, batch_size=4, output_directory=None).predictions["record_response"].tolist()
    finally:
        text_model.config.generation.stop_strings = None
    assert got == [text.split(stop)[0].strip() for text in full]
    assert got[0] != full[0]


# ------------------------------------------------------------------ output files, splits


def test_predict_writes_parquet_and_csv_to_a_new_directory_each_time(text_model, tmp_path):
    first = text_model.predict(MIXED, batch_size=2, output_directory=str(tmp_path))
    stamps = {name: os.stat(os.path.join(first.output_directory, name)).st_mtime_ns for name in os.listdir(first.output_directory)}
    second = text_model.predict(MIXED, batch_size=5, output_directory=str(tmp_path))
    assert [first.output_directory, second.output_directory] == [str(tmp_path / "predictions_run"), str(tmp_path / "predictions_run_1")]
    assert stamps == {name: os.stat(os.path.join(first.output_directory, name)).st_mtime_ns for name in stamps}
    assert set(stamps) == {"predictions.parquet", "predictions.csv"}
    for result in (first, second):
        parquet = pd.read_parquet(os.path.join(result.output_directory, "predictions.parquet"))
        csv = pd.read_csv(os.path.join(result.output_directory, "predictions.csv"), dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(parquet, result.predictions)
        assert csv["record_response"].tolist() == parquet["record_response"].tolist()
        assert len(parquet) == len(MIXED)
    pd.testing.assert_frame_equal(first.predictions, second.predictions)  # batch size changes memory, not results


def test_split_test_is_the_runs_held_out_rows(text_run, text_model, small_dataset, tmp_path):
    """`split="test"` picks the rows the run evaluated on: its predictions equal the experiment's."""
    csv = tmp_path / "data.csv"
    small_dataset.to_csv(csv, index=False)
    predicted = text_model.predict(str(csv), split="test", output_directory=None).predictions
    from_experiment = pd.read_parquet(os.path.join(text_run.run_directory, "predictions.parquet"))
    assert len(predicted) == 4
    pd.testing.assert_frame_equal(predicted, from_experiment)


def test_split_test_follows_sampling_as_training_does(make_config, small_dataset, tmp_path):
    """With preprocessing.sample_ratio, the test split is drawn from the sampled rows, as in training."""
    config = make_config(trainer={"type": "none", "_replace": True}, adapter=None, generation={"max_new_tokens": 1},
                         preprocessing={"sample_ratio": 0.5, "split": {"type": "random", "probabilities": [0.5, 0.0, 0.5]}})
    result = LudwigLLM(config).train(dataset=small_dataset, output_directory=str(tmp_path))
    model = LudwigLLM.load(os.path.join(result.run_directory, MODEL_DIR))
    evaluated = model.evaluate(small_dataset, split="test", output_directory=None)
    assert evaluated.statistics["record"]["rows"] == result.test_statistics["record"]["rows"] == 10
    assert evaluated.statistics == result.test_statistics


# ------------------------------------------------------------------ text: evaluation and metrics


def test_experiment_run_directory(text_run):
    assert RUN_FILES <= set(os.listdir(text_run.run_directory))
    on_disk = json.load(open(os.path.join(text_run.run_directory, TEST_STATISTICS)))
    assert on_disk == json.loads(json.dumps(text_run.test_statistics))
    assert set(on_disk["record"]) == {"loss", "perplexity", "next_token_accuracy", "bleu", "rouge1", "rouge2", "rougeL",
                                      "char_error_rate", "exact_match", "rows"}
    assert "evaluation" in json.load(open(os.path.join(text_run.run_directory, DESCRIPTION)))["timings_seconds"]


def test_evaluate_metrics_equal_reference_implementations(text_model, peft_reference, small_dataset, tmp_path):
    import sacrebleu
    from rouge_score import rouge_scorer
    from torchmetrics.text import CharErrorRate

    rows = small_dataset.head(6)
    result = text_model.evaluate(rows, batch_size=4, output_directory=str(tmp_path))
    assert result.output_directory == str(tmp_path / "evaluation_run")
    assert json.load(open(tmp_path / "evaluation_run" / TEST_STATISTICS)) == json.loads(json.dumps(result.statistics))
    assert os.path.isfile(tmp_path / "evaluation_run" / "predictions.parquet")
    statistics = result.statistics["record"]
    generated = result.predictions["record_response"].tolist()
    targets = rows["record"].tolist()
    model, tokenizer = peft_reference
    assert generated == reference_responses(model, tokenizer, rows.sentence)

    # teacher-forced loss: transformers' own loss per row, weighted by the row's target tokens (+ EOS)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for sentence, target in zip(rows.sentence, targets):
            prompt = tokenizer(TEMPLATE.format(sentence))["input_ids"]
            answer = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            labels = torch.tensor([[-100] * len(prompt) + answer])
            total += model(input_ids=torch.tensor([prompt + answer]), labels=labels).loss.item() * len(answer)
            tokens += len(answer)
    assert statistics["loss"] == pytest.approx(total / tokens, rel=1e-4)
    assert statistics["perplexity"] == pytest.approx(np.exp(total / tokens), rel=1e-4)
    assert 0.0 <= statistics["next_token_accuracy"] <= 1.0

    assert statistics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(generated, [targets]).score / 100)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert statistics[key] == pytest.approx(np.mean([scorer.score(t, g)[key].fmeasure for g, t in zip(generated, targets)]))
    assert statistics["char_error_rate"] == pytest.approx(float(CharErrorRate()(generated, targets)))
    assert statistics["exact_match"] == pytest.approx(np.mean([g == t for g, t in zip(generated, targets)]))
    assert statistics["rows"] == 6


def test_generation_metrics_can_be_switched_off(text_model, small_dataset, tmp_path, monkeypatch):
    from ludwig_llm.inference import predict as generation  # where predict calls generate

    with_generation = text_model.evaluate(small_dataset.head(3), output_directory=None).statistics["record"]

    def no_generation(*args, **kwargs):
        raise AssertionError("generated text although generation_metrics is off")

    monkeypatch.setattr(generation, "generate", no_generation)
    monkeypatch.setattr(text_model.config.output_feature, "generation_metrics", False)
    result = text_model.evaluate(small_dataset.head(3), output_directory=str(tmp_path))
    statistics = result.statistics["record"]
    assert set(statistics) == {"loss", "perplexity", "next_token_accuracy", "rows"}
    assert statistics == {key: with_generation[key] for key in statistics}  # the same teacher-forced numbers
    assert result.predictions is None
    assert sorted(os.listdir(result.output_directory)) == [TEST_STATISTICS]


def test_evaluate_input_errors_are_clear_and_come_before_model_work(text_model, small_dataset, tmp_path, monkeypatch):
    import ludwig_llm.inference.predict as generation  # where predict calls generate

    def fail(*args, **kwargs):
        raise AssertionError("the model ran before the input was checked")

    monkeypatch.setattr(generation, "generate", fail)
    with pytest.raises(UserError, match="has no column 'record'"):
        text_model.evaluate(small_dataset.drop(columns=["record"]), output_directory=None)
    gaps = small_dataset.head(4).copy()
    gaps.loc[2, "record"] = None
    with pytest.raises(UserError, match=r"column 'record' of dataset \(DataFrame\) is empty in 1 row\(s\), first at row 2"):
        text_model.evaluate(gaps, output_directory=None)
    with pytest.raises(UserError, match="has no column 'sentence'"):
        text_model.predict(small_dataset.rename(columns={"sentence": "text"}), output_directory=None)
    with pytest.raises(UserError, match="batch_size must be at least 1"):
        text_model.predict(small_dataset, batch_size=0, output_directory=None)
    header_only = tmp_path / "empty.csv"
    header_only.write_text("sentence,record\n")
    with pytest.raises(UserError, match="empty"):
        text_model.predict(str(header_only), output_directory=None)
    with pytest.raises(UserError, match=r"the test split of dataset \(DataFrame\) is empty"):
        text_model.predict(small_dataset.head(2), split="test", output_directory=None)  # 0.8/0.1/0.1 of 2 rows


# ------------------------------------------------------------------ trainer none


def test_trainer_none_run_is_the_base_model_and_predicts_like_it(make_config, small_dataset, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = make_config(trainer={"type": "none", "_replace": True}, adapter=None, generation={"max_new_tokens": MAX_NEW_TOKENS})
    result = LudwigLLM(config).train(dataset=small_dataset, output_directory=str(tmp_path))
    assert RUN_FILES <= set(os.listdir(result.run_directory))  # the layout of a fine-tuning run, evaluated
    assert result.test_statistics["record"]["rows"] == 4
    assert json.load(open(os.path.join(result.run_directory, TRAINING_STATISTICS)))["steps"] == []

    model = LudwigLLM.load(os.path.join(result.run_directory, MODEL_DIR))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    expected = reference_responses(base, AutoTokenizer.from_pretrained(tiny_model_dir), MIXED.sentence)
    assert model.predict(MIXED, batch_size=3, output_directory=None).predictions["record_response"].tolist() == expected
    # no parameter was updated: the loaded weights are the base model's
    loaded = dict(model._loaded.built.model.named_parameters())
    assert all(torch.equal(loaded[name], value) for name, value in base.named_parameters())
    evaluated = model.evaluate(small_dataset, split="test", output_directory=str(tmp_path / "evaluations"))
    assert evaluated.statistics == result.test_statistics
    assert os.path.isfile(tmp_path / "evaluations" / "evaluation_run" / TEST_STATISTICS)


# ------------------------------------------------------------------ category outputs

REVIEWS = pd.DataFrame({
    "review": ["great", "I loved every minute of this wonderful film, truly great", "fine", "terrible and boring",
               "bad", "ok I guess, nothing special about it", "great fun", "awful, I walked out after twenty minutes",
               "superb", "meh"],
    "sentiment": ["positive", "positive", "neutral", "negative", "negative", "neutral", "positive", "negative",
                  "positive", "neutral"],
    "split": ["train"] * 6 + ["test"] * 4,
})
# training split: 2 positive, 2 neutral, 2 negative -> ties, so the majority label is the first seen: positive


def category_config(make_config, **sections):
    """In-context learning (trainer none, no adapter) of REVIEWS' sentiment on the tiny model."""
    return make_config(**{
        "trainer": {"type": "none", "_replace": True}, "adapter": None,
        "input_features": [{"name": "review", "type": "text"}],
        "output_features": [{"name": "sentiment", "type": "category"}],
        "prompt": {"template": "Review: {__sample__}\nSentiment:"},
        "preprocessing": {"split": {"type": "fixed", "column": "split"}},
        **sections,
    })


@pytest.fixture(scope="module")
def category_run(make_config, tmp_path_factory):
    return LudwigLLM(category_config(make_config)).experiment(dataset=REVIEWS, output_directory=str(tmp_path_factory.mktemp("cat")))


def test_category_predictions_are_valid_labels_with_probabilities(category_run):
    from sklearn.metrics import accuracy_score, f1_score

    model_dir = os.path.join(category_run.run_directory, MODEL_DIR)
    manifest = json.load(open(os.path.join(model_dir, "ludwig_llm_model.json")))
    labels = ["negative", "neutral", "positive"]  # from the training rows, sorted
    assert manifest["labels"] == labels
    assert manifest["extra"]["train_label_counts"] == {"positive": 2, "neutral": 2, "negative": 2}

    predictions = LudwigLLM.load(model_dir).predict(REVIEWS, batch_size=4, output_directory=None).predictions
    assert list(predictions.columns) == ["sentiment_predictions", "sentiment_probability"] + [
        f"sentiment_probabilities_{label}" for label in labels]
    probabilities = predictions[[f"sentiment_probabilities_{label}" for label in labels]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-9)
    assert set(predictions["sentiment_predictions"]) <= set(labels)
    assert predictions["sentiment_predictions"].tolist() == [labels[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(predictions["sentiment_probability"], probabilities.max(axis=1))

    statistics = category_run.test_statistics["sentiment"]
    test_rows = REVIEWS[REVIEWS.split == "test"]
    test_predictions = predictions[(REVIEWS.split == "test").to_numpy()]["sentiment_predictions"].tolist()
    assert statistics["rows"] == 4
    assert statistics["accuracy"] == pytest.approx(accuracy_score(test_rows.sentiment, test_predictions))
    assert statistics["macro_f1"] == pytest.approx(f1_score(test_rows.sentiment, test_predictions, average="macro"))
    assert statistics["confusion_matrix_labels"] == labels
    assert {"precision", "recall", "confusion_matrix", "roc_auc"} <= set(statistics)
    assert statistics["majority_label"] == "positive"
    assert statistics["majority_baseline_accuracy"] == pytest.approx(2 / 4)


def test_category_order_kept_across_batches(category_run):
    """Each row scored alone gives the same probabilities as all rows batched (prompts of very different lengths)."""
    model = LudwigLLM.load(os.path.join(category_run.run_directory, MODEL_DIR))
    columns = [f"sentiment_probabilities_{label}" for label in ("negative", "neutral", "positive")]
    batched = model.predict(REVIEWS, batch_size=3, output_directory=None).predictions[columns].to_numpy()
    alone = np.vstack([model.predict(REVIEWS.iloc[[i]], output_directory=None).predictions[columns].to_numpy()
                       for i in range(len(REVIEWS))])
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-6)
    assert len({tuple(np.round(row, 6)) for row in alone}) > 3  # rows differ, so a shuffle would show


def test_category_unknown_label_is_a_clear_error_before_scoring(category_run, monkeypatch):
    import ludwig_llm.inference.label_scoring as label_scoring  # the category decoder's implementation, looked up at call time

    def fail(*args, **kwargs):
        raise AssertionError("labels were scored before the targets were checked")

    monkeypatch.setattr(label_scoring, "score_labels", fail)
    model = LudwigLLM.load(os.path.join(category_run.run_directory, MODEL_DIR))
    unknown = REVIEWS.copy()
    unknown.loc[1, "sentiment"] = "ecstatic"
    with pytest.raises(UserError) as error:
        model.evaluate(unknown, output_directory=None)
    message = str(error.value)
    assert "'ecstatic'" in message and "does not know" in message and "negative" in message and "\n" not in message


def test_category_label_set_from_config_vocab(make_config, tmp_path):
    vocab = ["positive", "negative", "neutral", "mixed"]
    config = category_config(make_config, output_features=[{"name": "sentiment", "type": "category", "vocab": vocab}])
    result = LudwigLLM(config).train(dataset=REVIEWS, output_directory=str(tmp_path))
    predictions = pd.read_parquet(os.path.join(result.run_directory, "predictions.parquet"))
    assert list(predictions.columns) == ["sentiment_predictions", "sentiment_probability"] + [
        f"sentiment_probabilities_{label}" for label in vocab]
    assert result.test_statistics["sentiment"]["confusion_matrix_labels"] == vocab


# ------------------------------------------------------------------ semantic retrieval, end to end

TOPICS = pd.DataFrame({
    "text": [
        "My cat sleeps on the windowsill all afternoon and purrs.",
        "The car needs new tires and an oil change before the trip.",
        "Simmer the tomato sauce with garlic and basil for twenty minutes.",
        "The stock market fell sharply after the interest rate announcement.",
        "Heavy rain and thunderstorms are expected tomorrow evening.",
        "The orchestra played Beethoven's ninth symphony last night.",
        "Our kitten purrs loudly when she naps in the sun.",
        "A puppy is chewing on my slippers.",
        "Will it snow this weekend?",
    ],
    "topic": ["pets", "vehicles", "cooking", "finance", "weather", "music", "pets", "pets", "weather"],
    "split": ["train"] * 7 + ["test"] * 2,
})
# Each query's nearest training row is the only one on its topic.
QUERIES = {"My engine makes a strange noise when I brake.": 1,
           "How long should I roast vegetables in the oven?": 2,
           "Shares dropped after the central bank raised rates.": 3,
           "Is a storm coming tonight?": 4}


def test_semantic_retrieval_is_saved_with_the_model_and_used_by_predict(make_config, tmp_path, monkeypatch, capsys):
    """trainer none + semantic retrieval: `train` saves the index in model/retrieval/, predict loads and uses it."""
    import ludwig_llm.inference.predict as prompt_module  # where predict renders the prompts
    from ludwig_llm.cli import main
    from ludwig_llm.data.retrieval import SemanticRetriever

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = make_config(trainer={"type": "none", "_replace": True}, adapter=None, generation={"max_new_tokens": 2},
                         input_features=[{"name": "text", "type": "text"}], output_features=[{"name": "topic", "type": "text"}],
                         prompt={"template": "Examples:\n{__context__}\n\nInput: {__sample__}\nResponse:",
                                 "retrieval": {"type": "semantic", "k": 1}},
                         preprocessing={"split": {"type": "fixed", "column": "split"}})
    result = LudwigLLM(config).train(dataset=TOPICS, output_directory=str(tmp_path))
    retrieval_dir = os.path.join(result.run_directory, MODEL_DIR, "retrieval")
    assert {"examples.parquet", "embeddings.safetensors", "retriever.json"} <= set(os.listdir(retrieval_dir))
    assert pd.read_parquet(os.path.join(retrieval_dir, "examples.parquet"))["input"].tolist() == TOPICS.text[:7].tolist()
    assert result.test_statistics["topic"]["rows"] == 2

    # `preprocess --debug`: the first training row (the cat) is shown its nearest other row (the kitten)
    config_path, data_path = tmp_path / "config.yaml", tmp_path / "topics.csv"
    config_path.write_text(json.dumps(config))
    TOPICS.to_csv(data_path, index=False)
    assert main(["preprocess", "--config", str(config_path), "--dataset", str(data_path), "--debug", "--rows", "1"]) == 0
    shown = capsys.readouterr().out
    assert "  | Examples:\n  | Input: Our kitten purrs loudly when she naps in the sun.\n  | Response: pets\n  | \n" \
           "  | Input: My cat sleeps on the windowsill all afternoon and purrs.\n  | Response:\n" in shown

    # Mark the saved index: predict must read it, not rebuild it from anything else.
    examples = pd.read_parquet(os.path.join(retrieval_dir, "examples.parquet"))
    examples["output"] = "saved-" + examples["output"]
    examples.to_parquet(os.path.join(retrieval_dir, "examples.parquet"), index=False)

    rendered = []
    original = prompt_module.prompt_texts

    def recording(*args, **kwargs):
        texts = original(*args, **kwargs)
        rendered.extend(texts)
        return texts

    monkeypatch.setattr(prompt_module, "prompt_texts", recording)
    model = LudwigLLM.load(os.path.join(result.run_directory, MODEL_DIR))
    assert isinstance(model._loaded.retriever, SemanticRetriever)
    predictions = model.predict(pd.DataFrame({"text": list(QUERIES)}), output_directory=None).predictions
    assert len(predictions) == len(rendered) == len(QUERIES)
    for (query, nearest), prompt in zip(QUERIES.items(), rendered):
        assert prompt == f"Examples:\nInput: {TOPICS.text[nearest]}\nResponse: saved-{TOPICS.topic[nearest]}\n\nInput: {query}\nResponse:"
