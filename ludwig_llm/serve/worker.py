"""One thread owns the loaded model, so concurrent requests never run it at the same time.

Prediction requests that wait together are merged into one `LudwigLLM.predict` call (a table is
predicted row by row in its order, so each request gets what it would get alone); any other job
(a completion, a stream) runs by itself, in arrival order.
"""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List

import pandas as pd

from ludwig_llm.errors import UserError

Row = Dict[str, Any]


@dataclass
class _PredictJob:
    rows: List[Row]
    future: Future


@dataclass
class _CallJob:
    call: Callable[[], Any]
    future: Future


_CLOSE = object()


def predictions_as_records(predictions: pd.DataFrame) -> List[Row]:
    """JSON-ready dicts (numpy numbers become plain numbers, NaN becomes null)."""
    return json.loads(predictions.to_json(orient="records", double_precision=15))


class ModelWorker:
    def __init__(self, predictor, max_batch_rows: int = 64):
        self.predictor = predictor
        self.max_batch_rows = max_batch_rows
        self._jobs: "queue.Queue" = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="ludwig_llm-model", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ submitting

    def predict(self, rows: List[Row]) -> Future:
        """A Future of one prediction dict per row."""
        future: Future = Future()
        self._jobs.put(_PredictJob(list(rows), future))
        return future

    def call(self, call: Callable[[], Any]) -> Future:
        future: Future = Future()
        self._jobs.put(_CallJob(call, future))
        return future

    def stream(self, make_iterator: Callable[[], Iterator]) -> Iterator:
        """The items of ``make_iterator()``, produced on the model thread and read here as they come."""
        channel: "queue.Queue" = queue.Queue()

        def produce():
            try:
                for item in make_iterator():
                    channel.put((True, item))
            except BaseException as error:
                channel.put((False, error))
                return
            channel.put((False, None))

        self.call(produce)
        while True:
            is_item, value = channel.get()
            if is_item:
                yield value
            elif value is None:
                return
            else:
                raise value

    def close(self) -> None:
        self._jobs.put(_CLOSE)
        self._thread.join(timeout=60)

    # ------------------------------------------------------------------ the model thread

    def _loop(self) -> None:
        deferred: List[Any] = []
        while True:
            job = deferred.pop(0) if deferred else self._jobs.get()
            if job is _CLOSE:
                return
            if isinstance(job, _CallJob):
                _run(job.future, job.call)
                continue
            batch, rows = [job], len(job.rows)
            while rows < self.max_batch_rows:
                try:
                    waiting = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if isinstance(waiting, _PredictJob):
                    batch.append(waiting)
                    rows += len(waiting.rows)
                else:
                    deferred.append(waiting)
                    break  # keep arrival order: predictions after it wait for it
            self._predict_batch(batch)

    def _predict_batch(self, batch: List[_PredictJob]) -> None:
        if len(batch) > 1:
            try:
                records = self._predict([row for job in batch for row in job.rows])
            except UserError:
                # One request's bad row must not fail the others: predict each alone for its own answer.
                for job in batch:
                    _run(job.future, lambda job=job: self._predict(job.rows))
                return
            except BaseException as error:
                for job in batch:
                    job.future.set_exception(error)
                return
            start = 0
            for job in batch:
                job.future.set_result(records[start:start + len(job.rows)])
                start += len(job.rows)
        else:
            _run(batch[0].future, lambda: self._predict(batch[0].rows))

    def _predict(self, rows: List[Row]) -> List[Row]:
        predictions = self.predictor.predict(pd.DataFrame(rows), output_directory=None).predictions
        return predictions_as_records(predictions)


def _run(future: Future, call: Callable[[], Any]) -> None:
    try:
        future.set_result(call())
    except BaseException as error:
        future.set_exception(error)
