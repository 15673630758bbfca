"""Execution backends, one per `backend.type`: `local` (this process) and `ray` (Ray Train / Ray Data)."""

from __future__ import annotations

import importlib

# Backend type -> "module:class"; imported on use so that Ray loads only when asked for.
BACKENDS = {
    "local": "ludwig_llm.backends.local:LocalBackend",
    "ray": "ludwig_llm.backends.ray:RayBackend",
}


def create_backend(config):
    module_name, class_name = BACKENDS[config.backend.type].split(":")
    return getattr(importlib.import_module(module_name), class_name)(config)
