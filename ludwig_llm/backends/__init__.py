"""Execution backends, one per `backend.type`: `local` (this process) and `ray` (Ray Train / Ray Data).

The backend is the only place that decides where training and prediction run. Each backend type's schema
class (``ludwig_llm.schema.backends``) names its class; that module is imported only when the type is
chosen, so Ray loads only when asked for.
"""

from __future__ import annotations

from ludwig_llm.errors import UserError
from ludwig_llm.schema.registry import backend_registry, load_implementation


def create_backend(config):
    schema = backend_registry.get(config.backend.type)
    try:
        backend_class = load_implementation(schema)
    except ModuleNotFoundError as error:  # an extra that is not installed, e.g. Ray
        if error.name and error.name.split(".")[0] in ("ray", "pyarrow"):
            raise UserError(f'backend type "{config.backend.type}" needs Ray: pip install "ludwig_llm[ray]".') from error
        raise
    return backend_class(config)
