"""`ludwig_llm check_config`, `render_config`, `export_schema` and `--help`, run as a user runs them:
in a subprocess. No traceback for a user error, and no heavy library imported on the way."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from ludwig_llm.schema import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_EXAMPLE = os.path.join(ROOT, "examples", "configs", "llama2_lora_4bit_finetune.yaml")
ICL_EXAMPLE = os.path.join(ROOT, "examples", "configs", "icl_category_sentiment.yaml")
HEAVY = ("torch", "transformers", "peft", "ray")


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ludwig_llm", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def no_traceback(result):
    assert "Traceback" not in result.stderr + result.stdout


# ---- check_config -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SEED_EXAMPLE, ICL_EXAMPLE], ids=os.path.basename)
def test_check_config_valid_exits_0(path):
    result = cli("check_config", "--config", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: valid"
    assert result.stderr == ""


def test_check_config_invalid_exits_1_with_every_path(tmp_path):
    data = yaml.safe_load(open(SEED_EXAMPLE))
    data["adapter"]["r"] = 0
    data["adapter"]["alpah"] = 3
    data["output_features"][0]["type"] = "txt"
    data["trainr"] = {}
    result = cli("check_config", "--config", write(tmp_path, yaml.safe_dump(data)))
    assert result.returncode == 1
    no_traceback(result)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert re.match(r"Invalid config .*config\.yaml: 4 problem\(s\)$", lines[0])
    assert lines[1:] == [
        "  - output_features[0].type: unknown output feature type 'txt'; known: 'text', 'category'. Did you mean 'text'? (got 'txt')",
        "  - adapter.r: 0 is out of range: must satisfy 1 <= value. (got 0)",
        "  - adapter.alpah: unknown key. Did you mean 'alpha'? (got 3)",
        "  - trainr: unknown key. Did you mean 'trainer'? (got {})",
    ]


def test_check_config_cross_field_problem_exits_1(tmp_path):
    data = yaml.safe_load(open(SEED_EXAMPLE))
    data["adapter"] = None
    data["prompt"]["template"] += "{response}"
    result = cli("check_config", "--config", write(tmp_path, yaml.safe_dump(data)))
    assert result.returncode == 1
    no_traceback(result)
    assert "  - prompt.template: the template names the output feature's column '{response}'" in result.stderr
    assert "  - quantization: quantized weights cannot be trained directly" in result.stderr


def test_check_config_missing_type_message(tmp_path):
    result = cli("check_config", "--config", write(tmp_path, open(SEED_EXAMPLE).read().replace("    type: finetune\n", "")))
    assert result.returncode == 1
    no_traceback(result)
    assert "  - trainer.type: required, but missing; set it to one of 'finetune', 'none', 'dpo', 'orpo', 'kto', 'grpo'." in result.stderr


BAD_FILES = {
    "yaml syntax error": ("base_model: x\ninput_features: [\n", "is not valid YAML at line 3, column 1"),
    "empty file": ("", "is empty."),
    "list file": ("- a\n- b\n", "must hold a mapping of settings (key: value), not a list."),
    "scalar file": ("hello\n", "not a str."),
}


@pytest.mark.parametrize("text,message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_check_config_file_that_is_not_a_mapping_gets_one_clear_message(tmp_path, text, message):
    path = write(tmp_path, text)
    result = cli("check_config", "--config", path)
    assert result.returncode == 1
    no_traceback(result)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1  # one message, one line
    assert result.stderr.startswith(f"error: config file {path} ")
    assert message in result.stderr


def test_check_config_missing_and_binary_files(tmp_path):
    result = cli("check_config", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    no_traceback(result)
    assert result.stderr.startswith("error: cannot read config file") and "No such file or directory" in result.stderr
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = cli("check_config", "--config", str(binary))
    assert result.returncode == 1
    no_traceback(result)
    assert "is not UTF-8 text" in result.stderr


def test_check_config_without_config_argument_is_a_usage_error():
    result = cli("check_config")
    assert result.returncode == 2
    no_traceback(result)
    assert "--config" in result.stderr


# ---- render_config -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SEED_EXAMPLE, ICL_EXAMPLE], ids=os.path.basename)
def test_render_config_prints_every_default_and_reloads_to_the_same_config(tmp_path, path):
    result = cli("render_config", "--config", path)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    original = load_config(path)
    assert rendered == original.to_dict()
    assert load_config(rendered) == original
    # every default filled in: sections the file leaves out are there, with their defaults
    assert rendered["generation"]["max_new_tokens"] == 64
    assert rendered["backend"] == {"type": "local", "cache_dir": None}
    assert rendered["preprocessing"]["split"] == {"type": "random", "probabilities": [0.8, 0.1, 0.1]}
    # rendering the rendered config changes nothing
    again = cli("render_config", "--config", write(tmp_path, result.stdout, "rendered.yaml"))
    assert again.returncode == 0 and again.stdout == result.stdout


def test_render_config_seed_details():
    rendered = yaml.safe_load(cli("render_config", "--config", SEED_EXAMPLE).stdout)
    assert rendered["adapter"]["r"] == 8 and rendered["adapter"]["alpha"] == 16
    assert rendered["quantization"]["bnb_4bit_quant_type"] == "nf4"
    assert rendered["trainer"]["learning_rate"] == 0.0001 and rendered["trainer"]["optimizer"]["type"] == "adamw"


def test_render_config_output_file(tmp_path):
    out = tmp_path / "rendered.yaml"
    result = cli("render_config", "--config", SEED_EXAMPLE, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}"
    assert load_config(str(out)) == load_config(SEED_EXAMPLE)


def test_render_config_invalid_exits_1(tmp_path):
    result = cli("render_config", "--config", write(tmp_path, "base_model: x\n"))
    assert result.returncode == 1
    no_traceback(result)
    assert result.stdout == ""
    assert "  - input_features: required, but missing." in result.stderr
    assert "  - output_features: required, but missing." in result.stderr


# ---- export_schema -------------------------------------------------------------------------------


def test_export_schema_prints_json_schema():
    import jsonschema

    result = cli("export_schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(open(SEED_EXAMPLE)), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**yaml.safe_load(open(SEED_EXAMPLE)), "trainr": {}}, schema)


def test_export_schema_output_file(tmp_path):
    out = tmp_path / "ludwig_llm.schema.json"
    result = cli("export_schema", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}"
    assert json.loads(out.read_text()) == json.loads(cli("export_schema").stdout)


def test_export_schema_to_an_unwritable_place_is_a_clear_error(tmp_path):
    result = cli("export_schema", "--output", str(tmp_path / "no" / "such" / "dir" / "s.json"))
    assert result.returncode == 1
    no_traceback(result)
    assert result.stderr.startswith("error: cannot write ")


# ---- speed: no heavy imports ---------------------------------------------------------------------


def imported_modules(importtime_stderr: str) -> set:
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


def heavy(names: set) -> list:
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


def test_importing_the_cli_and_schema_imports_no_heavy_library():
    """Only these stay free of torch and friends; every other module imports what it needs at its top."""
    code = "import ludwig_llm.cli, ludwig_llm.schema, ludwig_llm.errors, ludwig_llm.results; from ludwig_llm.schema import load_config"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    names = imported_modules(result.stderr)
    assert "ludwig_llm.schema.loader" in names and "marshmallow" in names  # the parse works
    assert heavy(names) == []


@pytest.mark.parametrize("args", [["--help"], ["check_config", "--config", SEED_EXAMPLE]], ids=["help", "check_config"])
def test_cli_commands_import_no_heavy_library(args):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "ludwig_llm", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    names = imported_modules(result.stderr)
    assert "ludwig_llm.cli" in names
    assert heavy(names) == []


def test_check_config_loads_no_heavy_library_in_sys_modules():
    code = (
        "import sys\nfrom ludwig_llm.cli import main\nassert main(['check_config', '--config', sys.argv[1]]) == 0\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code, SEED_EXAMPLE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("args", [["--help"], ["check_config", "--config", SEED_EXAMPLE]], ids=["help", "check_config"])
def test_answers_in_well_under_a_second(args):
    timings = []
    for _ in range(3):  # best of 3: the first run may pay for a cold disk cache
        start = time.perf_counter()
        result = cli(*args)
        timings.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stderr
    assert min(timings) < 1.0, timings


def test_help_lists_the_config_commands():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("check_config", "render_config", "export_schema"):
        assert command in result.stdout


def test_console_script_help_is_fast():
    import shutil

    script = shutil.which("ludwig_llm")
    if script is None:
        pytest.skip("the ludwig_llm console script is not installed (pip install -e .)")
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
        timings.append(time.perf_counter() - start)
        assert result.returncode == 0 and "check_config" in result.stdout
    assert min(timings) < 1.0, timings
