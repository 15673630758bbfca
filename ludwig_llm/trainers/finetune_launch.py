"""The `finetune` trainer's driver side: package the prepared rows as a job and run the loop on the backend's workers."""

from __future__ import annotations

import tempfile

from ludwig_llm.data.tokenize import pad_token_id_of
from ludwig_llm.errors import UserError
from ludwig_llm.results import latest_checkpoint_in
from ludwig_llm.trainers.classifier import run_classifier
from ludwig_llm.trainers.finetune import FineTuneJob, run_finetune
from ludwig_llm.trainers.run import TrainingRun


def train(run: TrainingRun) -> dict:
    data = run.data
    if not data.train:
        raise UserError("the training split is empty: give more rows, or change preprocessing.split.")
    feature = run.config.output_feature
    worker = run_classifier if feature.type == "category" and feature.uses_classifier_head() else run_finetune
    return launch(run, worker, list(data.train.examples), list(data.validation.examples))


def launch(run: TrainingRun, worker, train_rows: list, validation_rows: list, job_class=FineTuneJob, **job_fields) -> dict:
    """Run `worker` (run_finetune, or a recipe built on it) on the backend's workers with these encoded rows, in a
    `job_class` job (FineTuneJob or a subclass, whose own fields come in `job_fields`)."""
    data = run.data
    resume_from = latest_checkpoint_in(run.run_directory) if run.resume else None
    if run.resume and resume_from is None:
        print(f"--resume: {run.run_directory} has no checkpoint yet; training starts from the beginning.")
    # The few-shot index travels to the workers as files; they save it with the model.
    with tempfile.TemporaryDirectory(prefix="ludwig_llm_retrieval_") as retrieval_dir:
        if data.retriever is not None:
            data.retriever.save(retrieval_dir)
        job = job_class(config_dict=run.config.to_dict(), base_model_path=run.base_model_path,
                          train_rows=train_rows, validation_rows=validation_rows,
                          pad_token_id=pad_token_id_of(run.tokenizer), save_model=run.save_model, labels=run.labels,
                          retriever_directory=retrieval_dir if data.retriever is not None else None, **job_fields)
        return run.run_on_workers(worker, job, resume_from)
