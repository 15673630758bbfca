"""`ludwig_llm serve`'s own endpoints against a live server: /health, /predict and /batch_predict equal
`LudwigLLM.predict`, concurrent requests are batched and answer as one at a time, bad requests get a
4xx JSON error naming the problem, and the server keeps serving."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pytest

from tests.serve.conftest import free_port

SENTENCES = ["Hugo moved.", "In 2004, Grace relocated to Kyoto with her family.", "Oslo.", "Dana left Lima in 1999.",
             "Chen?", "Cairo became home for Farid in 2011.", "Elif moved to Paris in 2020.", "Bruno"] * 2


@pytest.fixture(scope="module")
def expected(served_model):
    """What `LudwigLLM.predict` answers for each sentence alone."""
    return [served_model.predictor.predict(pd.DataFrame({"sentence": [s]}), output_directory=None).predictions
            .to_dict(orient="records")[0] for s in SENTENCES]


def test_health(live_server, served_model):
    response = httpx.get(f"{live_server.url}/health")
    assert response.status_code == 200 and response.json() == {"status": "ok", "model": served_model.name}


def test_predict_and_batch_predict_equal_the_python_api(live_server, expected):
    for sentence, answer in list(zip(SENTENCES, expected))[:3]:
        response = httpx.post(f"{live_server.url}/predict", json={"sentence": sentence}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json() == answer
    response = httpx.post(f"{live_server.url}/batch_predict", json={"rows": [{"sentence": s} for s in SENTENCES]}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}
    assert len({answer["record_response"] for answer in expected}) > 1  # rows differ: a mix-up would show


def test_concurrent_requests_are_batched_and_each_equals_its_answer_alone(live_server, served_model, expected, monkeypatch):
    batches = []
    original = served_model.worker._predict

    def counting(rows):
        batches.append(len(rows))
        return original(rows)

    monkeypatch.setattr(served_model.worker, "_predict", counting)
    with httpx.Client(base_url=live_server.url, timeout=120) as client, ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda s: client.post("/predict", json={"sentence": s}), SENTENCES))
    assert [r.status_code for r in responses] == [200] * len(SENTENCES)
    assert [r.json() for r in responses] == expected
    assert sum(batches) == len(SENTENCES) and len(batches) < len(SENTENCES), batches


@pytest.mark.parametrize("path, body, words", [
    ("/predict", b'{"sentence": "Hugo moved.",', ["malformed JSON"]),
    ("/predict", b'{"text": "Hugo moved."}', ["the request", "'sentence'"]),
    ("/predict", b'["Hugo moved."]', ["valid dictionary"]),
    ("/batch_predict", b'{"rows": [{"sentence": "a"}, {"text": "b"}]}', ["rows[1]", "'sentence'"]),
    ("/batch_predict", b'{"rows": []}', ["'rows' is empty"]),
    ("/batch_predict", b'{"row": []}', ["rows", "Field required"]),
    ("/v1/completions", b'{"prompt": "a", "max_tokens": 0}', ["max_tokens must be at least 1"]),
    ("/v1/completions", b'{"prompt": "a", "n": 2}', ["n must be 1"]),
    ("/v1/chat/completions", b'{"messages": "hello"}', ["messages"]),
    ("/v1/chat/completions", b'{"model": "gpt-4", "messages": []}', ["'gpt-4' is not served"]),
])
def test_bad_requests_get_a_json_error_naming_the_problem(live_server, path, body, words):
    response = httpx.post(f"{live_server.url}{path}", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert 400 <= response.status_code < 500, response.text
    message = response.json()["error"]["message"]
    assert all(word in message for word in words), message
    assert httpx.get(f"{live_server.url}/health").status_code == 200


def test_cli_serve_answers_predict(trained_model_dir, expected):
    """`ludwig_llm serve` as a user starts it: one process, the model loaded once, then requests."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ludwig_llm", "serve", "--model_path", trained_model_dir,
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.time() < deadline, process.stdout.read() if process.poll() is not None else "timeout"
            time.sleep(0.5)
        response = httpx.post(f"http://127.0.0.1:{port}/predict", json={"sentence": SENTENCES[0]}, timeout=60)
        assert response.json() == expected[0]
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    assert "serving" in output and "Traceback" not in output, output


def test_category_model_answers_its_label_and_probabilities(make_config, tmp_path):
    """A category output (in-context learning): /predict gives the label, its probability and one per label."""
    from ludwig_llm.api import LudwigLLM
    from ludwig_llm.serve.app import ServedModel, create_app
    from tests.serve.conftest import LiveServer

    reviews = pd.DataFrame({"review": ["great", "awful", "fine", "superb", "bad", "meh"],
                            "sentiment": ["positive", "negative", "neutral", "positive", "negative", "neutral"]})
    config = make_config(**{"trainer": {"type": "none", "_replace": True}, "adapter": None,
                            "input_features": [{"name": "review", "type": "text"}],
                            "output_features": [{"name": "sentiment", "type": "category"}],
                            "prompt": {"template": "Review: {__sample__}\nSentiment:"}})
    run = LudwigLLM(config).train(dataset=reviews, output_directory=str(tmp_path))
    served = ServedModel(f"{run.run_directory}/model")
    server = LiveServer(create_app(served))
    try:
        answer = httpx.post(f"{server.url}/predict", json={"review": "what a great film"}, timeout=60).json()
    finally:
        server.stop()
        served.close()
    expected = served.predictor.predict(pd.DataFrame({"review": ["what a great film"]}), output_directory=None).predictions
    assert answer == pytest.approx(expected.to_dict(orient="records")[0])
    assert answer["sentiment_predictions"] in ("negative", "neutral", "positive")
    assert sum(answer[f"sentiment_probabilities_{label}"] for label in ("negative", "neutral", "positive")) == pytest.approx(1.0)
