"""What `train` hands a trainer type: the prepared data, the run directory, and the backend's workers.

A trainer type is its schema class in ``ludwig_llm.schema.trainers`` plus the function that class names in
`implementation`: ``train(run: TrainingRun) -> dict`` (the training statistics). It runs in the driver
process; work that needs the model on every worker goes through `run.run_on_workers`, so the trainer never
chooses between this process and a Ray cluster: the backend does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence


@dataclass
class TrainingRun:
    config: Any
    data: Any  # ludwig_llm.data.pipeline.PreparedData: the splits, their encoded rows and the retriever
    tokenizer: Any
    base_model_path: str
    run_directory: str
    save_model: bool
    resume: bool  # continue from the run directory's latest checkpoint
    labels: Optional[List[str]]  # a category output's labels, else None
    label_counts: Optional[Dict[str, int]]  # {label: training rows} of a category output, else None
    # run_on_workers(worker, job, resume_from) -> statistics: the backend calls worker(job, session) in this
    # process or in every Ray Train worker. `worker` is a module-level function; `job` is a plain dataclass with
    # `base_model_path`, `retriever_directory` (a Ray backend copies both where every worker can read them) and
    # `save_model` (then the worker saves the model with `session.save_model`), as FineTuneJob.
    run_on_workers: Callable[[Callable, Any, Optional[str]], dict]
    # The reward functions given to LudwigLLM.train(rewards=[...]) (the grpo trainer's), fn(completions, rows) -> [float].
    reward_functions: Sequence[Callable] = ()
