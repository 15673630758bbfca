"""The REST server of `ludwig_llm serve`: Ludwig's /predict and /batch_predict, and OpenAI-compatible
/v1/completions, /v1/chat/completions (with server-sent-event streaming) and /v1/models.

Every error is a JSON body `{"error": {"message", "type", "param", "code"}}` (OpenAI's shape, which
its client reads) with a 4xx status for bad requests; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any, Dict, List, Optional, Union

import uvicorn
from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from ludwig_llm.api import LudwigLLM
from ludwig_llm.data.prompt import PromptRenderer
from ludwig_llm.errors import UserError
from ludwig_llm.results import MODEL_DIR
from ludwig_llm.serve.completion import SamplingOptions, TextGenerator
from ludwig_llm.serve.worker import ModelWorker


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


class _OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # fields we do not use (user, logprobs, ...) are accepted and ignored
    model: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    stop: Union[str, List[str], None] = None
    stream: bool = False
    n: int = 1
    seed: Optional[int] = None

    def options(self, max_tokens: Optional[int] = None) -> SamplingOptions:
        if self.n != 1:
            raise ApiError(400, f"n must be 1 (got {self.n}): this server returns one choice per prompt.", param="n")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingOptions(max_tokens=max_tokens or self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                               stop=stop, seed=self.seed)


class CompletionRequest(_OpenAIRequest):
    prompt: Union[str, List[str]]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: Union[str, List[Dict[str, Any]], None] = None

    def as_template_message(self) -> dict:
        content = self.content
        if isinstance(content, list):  # content parts: only text is understood
            content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        return {"role": self.role, "content": content or ""}


class ChatRequest(_OpenAIRequest):
    messages: List[ChatMessage]
    max_completion_tokens: Optional[int] = None


class BatchRequest(BaseModel):
    rows: List[Dict[str, Any]]


class ServedModel:
    """The model, loaded once, with its worker thread and text generator."""

    def __init__(self, model_path: str, name: Optional[str] = None, max_batch_rows: int = 64):
        self.predictor = LudwigLLM.load(model_path)
        self.name = name or default_model_name(model_path)
        self.input_columns = PromptRenderer(self.predictor.config).required_columns()
        self.generator = TextGenerator(self.predictor.loaded_model, self.predictor.config.generation)
        self.worker = ModelWorker(self.predictor, max_batch_rows=max_batch_rows)

    def close(self) -> None:
        self.worker.close()


def default_model_name(model_path: str) -> str:
    """The run directory's name for `<run>/model`, else the directory's own name."""
    path = os.path.abspath(model_path).rstrip(os.sep)
    if os.path.basename(path) == MODEL_DIR:
        path = os.path.dirname(path)
    return os.path.basename(path)


def _error_response(status: int, message: str, kind: str = "invalid_request_error", param: Optional[str] = None):
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": param, "code": None}})


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            reason = (item.get("ctx") or {}).get("error", "invalid JSON")
            problems.append(f"malformed JSON: {reason} (at character {item['loc'][-1]})")
        else:
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {item.get('msg')}")
    return "; ".join(problems)


def create_app(served: ServedModel) -> FastAPI:
    app = FastAPI(title=f"ludwig_llm: {served.name}")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError):
        return _error_response(400, _validation_message(error))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError):
        return _error_response(error.status, error.message, error.kind, error.param)

    @app.exception_handler(UserError)
    async def user_error(_: Request, error: UserError):
        return _error_response(400, str(error))

    @app.exception_handler(Exception)
    async def server_error(_: Request, error: Exception):
        return _error_response(500, f"internal error: {type(error).__name__}: {error}", kind="server_error")

    def check_rows(rows: List[Dict[str, Any]], where) -> None:
        if not rows:
            raise ApiError(400, "'rows' is empty: give at least one row.", param="rows")
        for index, row in enumerate(rows):
            missing = [column for column in served.input_columns if column not in row]
            if missing:
                raise ApiError(400, f"{where(index)} has no input column {', '.join(map(repr, missing))}; "
                                    f"this model needs: {', '.join(served.input_columns)}.", param=missing[0])

    def check_model(requested: Optional[str]) -> None:
        if requested and requested != served.name:
            raise ApiError(404, f"model '{requested}' is not served here; this server serves '{served.name}'.",
                           param="model")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": served.name}

    @app.post("/predict")
    async def predict(row: Dict[str, Any] = Body(...)):
        check_rows([row], lambda _: "the request")
        return (await asyncio.wrap_future(served.worker.predict([row])))[0]

    @app.post("/batch_predict")
    async def batch_predict(request: BatchRequest):
        check_rows(request.rows, lambda index: f"rows[{index}]")
        return {"predictions": await asyncio.wrap_future(served.worker.predict(request.rows))}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": int(time.time()),
                                            "owned_by": "ludwig_llm"}]}

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest):
        check_model(request.model)
        options = request.options()
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if not prompts:
            raise ApiError(400, "'prompt' is empty.", param="prompt")
        prompt_ids = [served.generator.text_prompt_ids(prompt) for prompt in prompts]
        served.generator.check(options)
        meta = _meta("cmpl", "text_completion", served.name)
        if request.stream:
            return _sse(_completion_chunks(served, prompt_ids, options, meta))
        results = [await asyncio.wrap_future(served.worker.call(lambda ids=ids: served.generator.complete(ids, options)))
                   for ids in prompt_ids]
        choices = [{"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None} for i, r in enumerate(results)]
        return {**meta, "choices": choices, "usage": _usage(results)}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: ChatRequest):
        check_model(request.model)
        options = request.options(request.max_completion_tokens)
        prompt_ids = served.generator.chat_prompt_ids([m.as_template_message() for m in request.messages])
        served.generator.check(options)
        meta = _meta("chatcmpl", "chat.completion", served.name)
        if request.stream:
            return _sse(_chat_chunks(served, prompt_ids, options, {**meta, "object": "chat.completion.chunk"}))
        result = await asyncio.wrap_future(served.worker.call(lambda: served.generator.complete(prompt_ids, options)))
        choice = {"index": 0, "message": {"role": "assistant", "content": result.text}, "finish_reason": result.finish_reason}
        return {**meta, "choices": [choice], "usage": _usage([result])}

    return app


def _meta(prefix: str, kind: str, model: str) -> dict:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model}


def _usage(results) -> dict:
    prompt, completion = sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(events):
    """Server-sent events: one `data:` line per JSON chunk, then `data: [DONE]`."""

    def encode():
        try:
            for event in events:
                yield f"data: {json.dumps(event)}\n\n"
        except Exception as error:  # headers are sent already: report the error as the last event
            yield f"data: {json.dumps({'error': {'message': f'{type(error).__name__}: {error}', 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(encode(), media_type="text/event-stream")


def _pieces(served: ServedModel, prompt_ids, options):
    return served.worker.stream(lambda: served.generator.stream(prompt_ids, options))


def _completion_chunks(served: ServedModel, prompt_ids: List[List[int]], options: SamplingOptions, meta: dict):
    for index, ids in enumerate(prompt_ids):
        for piece in _pieces(served, ids, options):
            if isinstance(piece, str):
                yield {**meta, "choices": [{"index": index, "text": piece, "finish_reason": None, "logprobs": None}]}
            else:
                yield {**meta, "choices": [{"index": index, "text": "", "finish_reason": piece.finish_reason, "logprobs": None}]}


def _chat_chunks(served: ServedModel, prompt_ids: List[int], options: SamplingOptions, meta: dict):
    yield {**meta, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    for piece in _pieces(served, prompt_ids, options):
        if isinstance(piece, str):
            yield {**meta, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        else:
            yield {**meta, "choices": [{"index": 0, "delta": {}, "finish_reason": piece.finish_reason}]}


def serve(model_path: str, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Load the model once, then answer requests until interrupted."""
    served = ServedModel(model_path)
    try:
        print(f"serving '{served.name}' on http://{host}:{port} (OpenAI base URL: http://{host}:{port}/v1)", flush=True)
        uvicorn.run(create_app(served), host=host, port=port, log_level=log_level)
    finally:
        served.close()
