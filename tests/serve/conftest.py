"""A tiny trained LoRA model directory (2 training steps on the tiny random Llama) shared by the serve,
export and chat tests, and a live server on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from ludwig_llm.results import MODEL_DIR

MAX_NEW_TOKENS = 8


@pytest.fixture(scope="session")
def trained_model_dir(make_config, small_dataset, tmp_path_factory) -> str:
    from ludwig_llm.api import LudwigLLM

    config = make_config(trainer={"max_steps": 2}, generation={"max_new_tokens": MAX_NEW_TOKENS})
    result = LudwigLLM(config).train(dataset=small_dataset, output_directory=str(tmp_path_factory.mktemp("serve_run")))
    return os.path.join(result.run_directory, MODEL_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` in a background thread until ``stop``."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def served_model(trained_model_dir):
    from ludwig_llm.serve.app import ServedModel

    served = ServedModel(trained_model_dir)
    yield served
    served.close()


@pytest.fixture(scope="session")
def live_server(served_model):
    from ludwig_llm.serve.app import create_app

    server = LiveServer(create_app(served_model))
    yield server
    server.stop()
