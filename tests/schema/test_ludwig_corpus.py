"""Ludwig's own public LLM configs (tests/ludwig_corpus, quoted from its repository, docs and integration tests)
get the outcome recorded in tests/ludwig_corpus/expected.yaml: accepted ones stay accepted, refused ones are
refused with the recorded first problem. When a change lets a config through or changes why it is refused,
this test fails until expected.yaml (and the table in tests/ludwig_corpus/README.md) say so: progress on
issue #14 shows up as entries moving from `refused` to `accepted`."""

import glob
import os

import pytest
import yaml

from ludwig_llm.errors import ConfigValidationError
from ludwig_llm.schema import load_config

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ludwig_corpus")
EXPECTED_FILE = os.path.join(CORPUS, "expected.yaml")
CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CORPUS, "*.yaml")) if p != EXPECTED_FILE)

with open(EXPECTED_FILE, encoding="utf-8") as _f:
    EXPECTED = yaml.safe_load(_f)


def first_problem(error: ConfigValidationError) -> str:
    issue = error.issues[0]
    return f"{issue.path or '<config>'}: {issue.message}"


def test_the_corpus_holds_fifty_ludwig_configs_each_with_its_source():
    assert len(CONFIGS) >= 50
    for name in CONFIGS:
        with open(os.path.join(CORPUS, name), encoding="utf-8") as f:
            first_line = f.readline()
        assert first_line.startswith("# Source: github.com/ludwig-ai/"), name


def test_every_config_has_exactly_one_expected_outcome():
    assert sorted(EXPECTED) == CONFIGS
    assert {entry["status"] for entry in EXPECTED.values()} <= {"accepted", "refused"}


@pytest.mark.parametrize("name", CONFIGS)
def test_ludwig_config_gets_its_recorded_outcome(name):
    expected = EXPECTED[name]
    path = os.path.join(CORPUS, name)
    if expected["status"] == "accepted":
        config = load_config(path)
        assert config.model_type == "llm"
        return
    with pytest.raises(ConfigValidationError) as caught:
        load_config(path)
    assert first_problem(caught.value).startswith(expected["first_error"]), (
        f"{name}: first problem changed; update tests/ludwig_corpus/expected.yaml if this is progress.\n{caught.value}"
    )
