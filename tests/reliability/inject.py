"""Run the CLI with one fault injected, for tests that SIGKILL it at a chosen point.

    python -m tests.reliability.inject FAULT MARKER_FILE -- <ludwig_llm arguments>

A stalling fault writes part of its output (as a writer interrupted there would), creates MARKER_FILE and
sleeps, so the test kills the process at exactly that point: deterministic, no race on timing.
"""

from __future__ import annotations

import pathlib
import sys
import time

STALL_SECONDS = 600


def _stall(marker: str) -> None:
    pathlib.Path(marker).touch()
    time.sleep(STALL_SECONDS)


def install(fault: str, marker: str) -> None:
    import pandas as pd

    if fault == "predictions_csv":  # half the rows written, then killed
        original_csv = pd.DataFrame.to_csv

        def to_csv(self, path, *args, **kwargs):
            original_csv(self.head(len(self) // 2), path, *args, **kwargs)
            _stall(marker)

        pd.DataFrame.to_csv = to_csv
    elif fault == "predictions_parquet":  # the file opened, nothing written yet
        def to_parquet(self, path, *args, **kwargs):
            open(path, "wb").close()
            _stall(marker)

        pd.DataFrame.to_parquet = to_parquet
    elif fault.startswith("checkpoint_"):  # the Nth checkpoint: its weights file half written
        import ludwig_llm.trainers.finetune as finetune

        original_checkpoint, calls, nth = finetune.save_checkpoint, [], int(fault.split("_")[1])

        def save_checkpoint(directory, weights, *args, **kwargs):
            calls.append(directory)
            if len(calls) == nth:
                pathlib.Path(directory, "trainable.safetensors").write_bytes(b"\x00" * 100)
                _stall(marker)
            return original_checkpoint(directory, weights, *args, **kwargs)

        finetune.save_checkpoint = save_checkpoint
    elif fault == "model_save":  # the final model directory written but for its last file
        import ludwig_llm.models.bundle as bundle

        def write_model_card(directory, *args, **kwargs):
            pathlib.Path(directory, "README.md").write_text("# half a card")
            _stall(marker)

        bundle.write_model_card = write_model_card
    elif fault == "export":  # merged weights written, generation config not yet
        import transformers

        def save_pretrained(self, directory, *args, **kwargs):
            _stall(marker)

        transformers.GenerationConfig.save_pretrained = save_pretrained
    else:
        raise SystemExit(f"unknown fault {fault}")


if __name__ == "__main__":
    fault, marker, separator, *arguments = sys.argv[1:]
    assert separator == "--"
    install(fault, marker)
    from ludwig_llm.cli import main

    sys.exit(main(arguments))
