"""Python API: the same verbs as the CLI.

    model = LudwigLLM("config.yaml")
    result = model.train(dataset="data.csv")
    predictor = LudwigLLM.load(f"{result.run_directory}/model")
    predictions = predictor.predict("new_rows.csv").predictions
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np
import pandas as pd
import yaml

from ludwig_llm import results
from ludwig_llm.backends import create_backend
from ludwig_llm.data import rows as input_rows
from ludwig_llm.data.formats import structured_format
from ludwig_llm.data.pipeline import debug_report, prepare_data, preprocess_summary
from ludwig_llm.data.category import category_targets
from ludwig_llm.data.prompt import PromptRenderer
from ludwig_llm.data.retrieval import build_retriever
from ludwig_llm.errors import UserError
from ludwig_llm.inference.predict import select_split, write_predictions
from ludwig_llm.models.bundle import read_model_directory
from ludwig_llm.models.loader import load_tokenizer
from ludwig_llm.models.resolve import resolve_base_model
from ludwig_llm.plots import write_confusion_matrices
from ludwig_llm.run_report import finish_run
from ludwig_llm.schema import load_config
from ludwig_llm.schema.registry import load_implementation
from ludwig_llm.trainers.run import TrainingRun

RUN_CONFIG = "config.yaml"


@dataclass
class TrainResult:
    run_directory: str
    training_statistics: Dict[str, Any]
    test_statistics: Optional[Dict[str, Any]] = None


@dataclass
class PredictResult:
    predictions: Any  # pandas.DataFrame
    output_directory: Optional[str]


@dataclass
class EvaluateResult:
    statistics: Dict[str, Any]
    predictions: Any
    output_directory: Optional[str]


class LudwigLLM:
    """A config to train, or (after `load`) a trained model to predict and evaluate with."""

    def __init__(self, config: Union[str, os.PathLike, dict, Any]):
        self.config = config if hasattr(config, "to_dict") else load_config(config)
        self._loaded = None  # the SavedModel that `load` opened
        self._backend = None

    # ------------------------------------------------------------------ training

    def train(self, dataset=None, *, training_set=None, validation_set=None, test_set=None,
              output_directory: str = "results", experiment_name: str = "experiment", model_name: str = "run",
              random_seed: Optional[int] = None, skip_save_model: bool = False, resume: Optional[str] = None,
              evaluate_test: bool = False, rewards: Sequence[Callable] = ()) -> TrainResult:
        """Preprocess, train and save a run directory; `resume` continues an interrupted run ('latest' or its path).
        `rewards`: reward functions of the grpo trainer, besides `trainer.rewards`: fn(completions, rows) -> [float],
        one number per completion text; `rows` are the dataset rows (column -> cell) the completions answer."""
        if rewards and self.config.trainer.type != "grpo":
            raise UserError(f"rewards= is for trainer type 'grpo'; this config's trainer is '{self.config.trainer.type}'.")
        if resume and random_seed is not None:
            raise UserError("--random_seed cannot be combined with --resume: a resumed run continues with the seed saved "
                            "in its config (trainer.seed). Leave out --random_seed, or start a new run with it.")
        timings: Dict[str, float] = {}
        started = time.time()
        if resume:
            run_directory = self._resume_directory(resume, output_directory, experiment_name, model_name)
        else:
            if random_seed is not None:
                self.config.trainer.seed = random_seed
            run_directory = results.new_run_directory(output_directory, experiment_name, model_name)
            results.write_text_atomically(os.path.join(run_directory, RUN_CONFIG), yaml.safe_dump(self.config.to_dict(), sort_keys=False))
            results.mark_run_state(run_directory, results.RUN_CREATED)
        try:
            config = self.config

            base_model_path = resolve_base_model(config.base_model)
            tokenizer = load_tokenizer(base_model_path, trust_remote_code=config.model_parameters.trust_remote_code)
            data = prepare_data(config, tokenizer, dataset=dataset, training_set=training_set,
                                validation_set=validation_set, test_set=test_set, retriever_factory=self._retriever_factory())
            timings["preprocessing"] = time.time() - started
            backend = create_backend(config)

            def run_on_workers(worker, job, resume_from):
                return backend.run_workers(worker, job, run_directory, resume_from)

            run = TrainingRun(config=config, data=data, tokenizer=tokenizer, base_model_path=base_model_path,
                              run_directory=run_directory, save_model=not skip_save_model, resume=bool(resume),
                              labels=data.labels, label_counts=self._label_counts(data),
                              run_on_workers=run_on_workers, reward_functions=list(rewards))
            training_started = time.time()
            results.mark_run_state(run_directory, results.RUN_TRAINING)
            statistics = load_implementation(config.trainer)(run)  # the trainer type's train function
            timings["training"] = time.time() - training_started
            statistics["preprocessing"] = data.stats
            results.write_json(os.path.join(run_directory, results.TRAINING_STATISTICS), statistics)

            test_statistics = None
            if evaluate_test or config.trainer.evaluates_test_split:
                test_statistics = self._evaluate_test_split(config, run_directory, data, skip_save_model, timings)
            results.write_json(
                os.path.join(run_directory, results.DESCRIPTION),
                results.describe_run(config.to_dict(), data_fingerprint=data.fingerprint, seed=config.trainer.seed,
                                     timings=timings, extra={"base_model_path": base_model_path, "run_directory": run_directory}),
            )
            finish_run(run_directory, config)  # learning curves, tracking, the model card with data fingerprint and test metrics
        except BaseException as error:
            # A run killed here keeps its last state; one that fails is marked, so `--resume` never takes
            # it for an interrupted run unless it has a checkpoint to continue from.
            with contextlib.suppress(Exception):  # never hide the error itself
                results.mark_run_state(run_directory, results.RUN_FAILED, error=f"{type(error).__name__}: {error}"[:500])
            raise
        results.mark_run_state(run_directory, results.RUN_FINISHED)
        return TrainResult(run_directory, statistics, test_statistics)

    def experiment(self, dataset=None, **kwargs) -> TrainResult:
        """Train, then evaluate on the test split, in one run directory."""
        return self.train(dataset, evaluate_test=True, **kwargs)

    def preprocess(self, dataset=None, *, training_set=None, validation_set=None, test_set=None,
                   debug: bool = False, debug_rows: int = 3):
        """Render the prompts and tokenize the splits, printing row counts; `debug` shows the first `debug_rows` rows'
        prompt, token ids and the tokens the loss is computed on."""
        path = resolve_base_model(self.config.base_model)
        tokenizer = load_tokenizer(path, trust_remote_code=self.config.model_parameters.trust_remote_code)
        data = prepare_data(self.config, tokenizer, dataset=dataset, training_set=training_set,
                            validation_set=validation_set, test_set=test_set, retriever_factory=self._retriever_factory())
        print(preprocess_summary(data))
        if debug:
            print(debug_report(self.config, tokenizer, data.splits.train, rows=debug_rows, retriever=data.retriever))
        return data

    def _resume_directory(self, resume: str, output_directory: str, experiment_name: str, model_name: str) -> str:
        run_directory = results.latest_run_directory(output_directory, experiment_name, model_name) if resume == "latest" else resume
        saved = os.path.join(run_directory, RUN_CONFIG)
        if not os.path.isfile(saved):
            raise UserError(f"--resume {run_directory}: not a ludwig_llm run directory (no {RUN_CONFIG}).")
        stored = load_config(saved)
        if stored.to_dict() != self.config.to_dict():
            print(f"--resume: using the config saved in {saved} (it differs from the one given).")
        self.config = stored
        return run_directory

    def _retriever_factory(self):
        retrieval = self.config.prompt.retrieval
        if retrieval.type is None:
            return None
        config = self.config

        def build(train_df):
            return build_retriever(retrieval, train_df, config.input_feature.column_name(),
                                   config.output_feature.column_name(), seed=config.trainer.seed)

        return build

    def _label_counts(self, data) -> Optional[Dict[str, int]]:
        """{label: rows} of a category's training split (after the fallback label), in order of first appearance
        (for the majority baseline)."""
        feature = self.config.output_feature
        if feature.type != "category":
            return None
        return dict(Counter(category_targets(feature, data.labels, data.splits.train, where="the training split")))

    def _evaluate_test_split(self, config, run_directory, data, skip_save_model, timings):
        if skip_save_model:
            return None
        if data.splits.test is None or len(data.splits.test) == 0:
            print("no test rows: skipping evaluation on the test split.")
            return None
        started = time.time()
        evaluator = LudwigLLM.load(os.path.join(run_directory, results.MODEL_DIR))
        evaluation = evaluator.evaluate(data.splits.test, output_directory=run_directory, write_into=run_directory)
        timings["evaluation"] = time.time() - started
        return evaluation.statistics

    # ------------------------------------------------------------------ prediction

    @classmethod
    def load(cls, model_path: str) -> "LudwigLLM":
        """A trained model (a run's model/ directory) ready to predict and evaluate, on the backend its config names."""
        backend = create_backend(read_model_directory(model_path)[0])
        loaded = backend.open_model(model_path)
        instance = cls(loaded.config)  # one config object: changes to `instance.config` reach prediction
        instance._backend, instance._loaded = backend, loaded
        return instance

    @property
    def loaded_model(self):
        """The model and tokenizer (a BuiltModel) of a `load`ed model, for serving, chat and export."""
        return self._require_loaded().built

    def _require_loaded(self):
        if self._loaded is None:
            raise UserError("this model is not trained or loaded: call train() and then LudwigLLM.load(<run>/model).")
        return self._loaded

    def predict(self, dataset, *, batch_size: Optional[int] = None, output_directory: Optional[str] = "results",
                split: str = "full") -> PredictResult:
        """Predictions for every row of `dataset`, in its row order; written as Parquet and CSV."""
        loaded = self._require_loaded()
        df = select_split(self.config, dataset, split)
        if self.config.preprocessing.empty_inputs == input_rows.DROP:  # empty inputs get an empty, flagged prediction
            empty = self._empty_inputs(df)
            kept = self._backend.predict(loaded, df[~empty], batch_size=batch_size) if not empty.all() else pd.DataFrame()
            predictions = input_rows.with_flagged_empty(kept, empty, self.config.output_feature.name + input_rows.FLAG_SUFFIX)
        else:
            predictions = self._backend.predict(loaded, df, batch_size=batch_size)
        directory = None
        if output_directory:
            directory = results.new_run_directory(output_directory, "predictions", "run")
            write_predictions(predictions, directory)
        return PredictResult(predictions, directory)

    def _empty_inputs(self, df) -> np.ndarray:
        """True for rows whose input cell is empty; conversations and presets check their own cells instead."""
        if structured_format(self.config) is not None:
            return np.zeros(len(df), dtype=bool)
        return input_rows.empty_input_mask(df, PromptRenderer(self.config).input_columns())

    def evaluate(self, dataset, *, batch_size: Optional[int] = None, output_directory: Optional[str] = "results",
                 split: str = "full", write_into: Optional[str] = None) -> EvaluateResult:
        """Predictions plus metrics against the dataset's targets; writes test_statistics.json."""
        loaded = self._require_loaded()
        df = select_split(self.config, dataset, split, need_targets=True, manifest=loaded.manifest)
        empty = self._empty_inputs(df)
        predictions, statistics = self._backend.evaluate(loaded, df[~empty].reset_index(drop=True), batch_size=batch_size)
        if self.config.preprocessing.empty_inputs == input_rows.DROP:
            statistics[self.config.output_feature.name][input_rows.DROPPED_STAT] = int(empty.sum())
        directory = write_into
        if directory is None and output_directory:
            directory = results.new_run_directory(output_directory, "evaluation", "run")
        if directory:
            if predictions is not None:
                write_predictions(predictions, directory)
            results.write_json(os.path.join(directory, results.TEST_STATISTICS), statistics)
            write_confusion_matrices(directory, statistics)
        return EvaluateResult(statistics, predictions, directory)
