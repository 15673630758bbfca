"""The guides quote ludwig_llm: the troubleshooting page's messages are what the code says today, and the
editor autocompletion page's example config is valid against the schema `export_schema` writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from ludwig_llm.errors import UserError
from tests.docs.site_helpers import REPO, article_of, page_file, text_blocks, text_of, yaml_blocks

SCHEMA_COMMENT = "# yaml-language-server: $schema=./ludwig_llm.schema.json"


def _quoted_errors(site: Path) -> list:
    """The `error: ...` messages the troubleshooting page shows, without the prefix."""
    blocks = text_blocks(article_of(page_file(site, "user_guide/troubleshooting")))
    return [block.strip().removeprefix("error: ") for block in blocks if block.startswith("error: ")]


def _message(call) -> str:
    with pytest.raises(UserError) as raised:
        call()
    return str(raised.value)


def test_troubleshooting_quotes_the_real_messages(site, tmp_path, monkeypatch):
    from ludwig_llm.api import LudwigLLM
    from ludwig_llm.backends.ray_cluster import check_cluster_resources
    from ludwig_llm.models.loader import check_remote_code
    from ludwig_llm.results import latest_run_directory

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "custom", "auto_map": {"AutoModelForCausalLM": "m.M"}}))
    monkeypatch.chdir(tmp_path)
    config = {"base_model": "smollm2-135m-instruct", "input_features": [{"name": "q", "type": "text"}],
              "output_features": [{"name": "a", "type": "text"}], "trainer": {"type": "finetune"}}
    actual = [
        _message(lambda: check_remote_code(str(model), False)).replace(str(model), "<model>"),
        _message(lambda: check_cluster_resources(
            "training", 8, {"GPU": 1.0}, cluster={"CPU": 32.0, "GPU": 4.0},
            settings="backend.trainer (num_workers, use_gpu, resources_per_worker)")),
        _message(lambda: LudwigLLM(config).train(resume="latest", random_seed=3)),
        _message(lambda: latest_run_directory("results", "experiment", "run")),
    ]
    assert _quoted_errors(site) == actual


def test_troubleshooting_covers_the_common_problems(site):
    article = article_of(page_file(site, "user_guide/troubleshooting"))
    for heading in ("the-config-is-refused", "gated-models-and-hf_token", "models-that-ship-their-own-code", "out-of-memory",
                    "truncated-prompts-and-targets", "ray-cannot-place-the-workers", "resuming-an-interrupted-run"):
        assert f'id="{heading}"' in article, heading


@pytest.fixture(scope="module")
def exported_schema(tmp_path_factory) -> dict:
    """The schema as users get it: written by the `export_schema` command."""
    out = tmp_path_factory.mktemp("schema") / "ludwig_llm.schema.json"
    done = subprocess.run([sys.executable, "-m", "ludwig_llm", "export_schema", "--output", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text(encoding="utf-8"))


def _autocompletion_example(site: Path) -> str:
    article = article_of(page_file(site, "user_guide/editor_autocompletion"))
    examples = [text for text, _, _ in yaml_blocks(article) if SCHEMA_COMMENT in text]
    assert len(examples) == 1, "the page should show one config with the yaml-language-server comment"
    return examples[0]


def test_autocompletion_example_validates_against_the_exported_schema(site, exported_schema):
    example = _autocompletion_example(site)
    assert example.splitlines()[0] == SCHEMA_COMMENT, "the schema comment must be the config's first line"
    validator = jsonschema.Draft202012Validator(exported_schema)
    data = yaml.safe_load(example)
    assert list(validator.iter_errors(data)) == []
    # The same schema flags the mistakes an editor should underline.
    for broken in ({**data, "adpter": data["adapter"]}, {**data, "trainer": {"epochs": 3}},
                   {**data, "adapter": {**data["adapter"], "r": 0}}):
        assert list(validator.iter_errors(broken)), broken


def test_autocompletion_page_exports_to_the_file_the_comment_names(site):
    text = text_of(article_of(page_file(site, "user_guide/editor_autocompletion")))
    assert "ludwig_llm export_schema --output ludwig_llm.schema.json" in text
