"""Hostile YAML through the commands that train: refused at once with a short message, and no run directory made."""

from __future__ import annotations

from ludwig_llm.cli import main
from tests.schema.test_schema_limits import ALIAS_BOMB


def test_alias_bomb_is_refused_before_any_run_directory(small_dataset_csv, tmp_path, capsys):
    config = tmp_path / "bomb.yaml"
    config.write_text(ALIAS_BOMB)
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--dataset", small_dataset_csv, "--output_directory", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err) < 2000 and str(config) in err and "Traceback" not in err
    assert not out.exists()
