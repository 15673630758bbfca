"""`ludwig_llm upload`: put a trained model on the Hugging Face Hub.

The model directory goes up as it is (adapter or weights, tokenizer, model card, and ludwig_llm's
config and manifest, so `LudwigLLM.load` works on a download), or with ``merged`` the plain
transformers model that `export` writes. The token comes from the environment (HF_TOKEN) and is
never printed.
"""

from __future__ import annotations

import re
import tempfile

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from ludwig_llm.errors import UserError
from ludwig_llm.export import export_model
from ludwig_llm.models.bundle import read_model_directory
from ludwig_llm.models.loader import hf_token

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def upload_model(model_path: str, repo_id: str, *, merged: bool = False, private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload the model; returns the repository's URL."""
    if not _REPO_ID.match(repo_id):
        raise UserError(f"--repo_id {repo_id!r}: give it as ORG/NAME (letters, digits, '-', '_', '.').")
    read_model_directory(model_path)  # a clear error before anything is uploaded
    token = hf_token()
    if token is None:
        raise UserError("no Hugging Face token: set HF_TOKEN in the environment (a token with write access).")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        if merged:
            with tempfile.TemporaryDirectory(prefix="ludwig_llm_upload_") as staging:
                export_model(model_path, staging, "merged")
                api.upload_folder(repo_id=repo_id, folder_path=staging, repo_type="model",
                                  commit_message="Upload merged model with ludwig_llm")
        else:
            api.upload_folder(repo_id=repo_id, folder_path=model_path, repo_type="model",
                              commit_message="Upload model with ludwig_llm")
    except HfHubHTTPError as error:
        raise UserError(f"the Hub refused the upload to {repo_id}: {error}") from None
    return str(url)
