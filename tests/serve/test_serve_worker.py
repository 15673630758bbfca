"""The model thread of `serve`: waiting predictions are merged into one call, a bad row fails only its own
request, and other jobs keep their arrival order."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from ludwig_llm.errors import UserError
from ludwig_llm.serve.worker import ModelWorker


class FakePredictor:
    """Echoes each row's 'x' doubled; rows with x < 0 are bad input. The first call waits for `release`."""

    def __init__(self):
        self.calls, self.started, self.release = [], threading.Event(), threading.Event()

    def predict(self, df, output_directory=None):
        self.started.set()
        self.release.wait(10)
        self.calls.append(len(df))
        if (df["x"] < 0).any():
            raise UserError(f"row {int((df['x'] < 0).to_numpy().argmax())}: x must not be negative")
        return type("Result", (), {"predictions": pd.DataFrame({"y": df["x"] * 2})})()


def test_waiting_predictions_are_merged_and_a_bad_row_fails_only_its_request():
    predictor = FakePredictor()
    worker = ModelWorker(predictor)
    try:
        first = worker.predict([{"x": 0}])  # holds the model thread until released
        assert predictor.started.wait(10)
        waiting = [worker.predict([{"x": x}]) for x in (1, -1, 3)] + [worker.predict([{"x": 4}, {"x": 5}])]
        predictor.release.set()
        assert first.result(10) == [{"y": 0}]
        assert waiting[0].result(10) == [{"y": 2}]
        with pytest.raises(UserError, match="must not be negative"):
            waiting[1].result(10)
        assert waiting[2].result(10) == [{"y": 6}]
        assert waiting[3].result(10) == [{"y": 8}, {"y": 10}]
        # one call for the first request, one merged call of the 5 waiting rows, then each request alone
        assert predictor.calls == [1, 5, 1, 1, 1, 2]
    finally:
        worker.close()


def test_other_jobs_keep_their_place_between_predictions():
    predictor = FakePredictor()
    worker = ModelWorker(predictor)
    order = []
    try:
        first = worker.predict([{"x": 1}])
        assert predictor.started.wait(10)
        call = worker.call(lambda: order.append(("call", list(predictor.calls))))
        after = worker.predict([{"x": 2}])
        predictor.release.set()
        first.result(10), call.result(10), after.result(10)
        assert order == [("call", [1])] and predictor.calls == [1, 1]
        assert list(worker.stream(lambda: iter(["a", "b"]))) == ["a", "b"]
        with pytest.raises(ZeroDivisionError):
            list(worker.stream(lambda: (1 / 0 for _ in range(1))))
    finally:
        worker.close()
