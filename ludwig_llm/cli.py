"""The `ludwig_llm` command line. Heavy libraries are imported inside the handlers, so `--help`
and `check_config` answer at once."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Dict, List, Optional

import yaml

from ludwig_llm.errors import ConfigValidationError, UserError

DATASET_HELP = ("CSV, TSV, JSON, JSONL or Parquet file, a directory saved with datasets' save_to_disk, a Hugging Face dataset id, "
                "or hf://<id or directory>?subset=<name>&split=<split>&data_files=<glob,...> (options of datasets.load_dataset).")


def _add_dataset_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--dataset", required=required, help=f"The whole dataset, split by preprocessing.split. {DATASET_HELP}")
    parser.add_argument("--training_set", help="Training rows, when the splits come as separate files.")
    parser.add_argument("--validation_set", help="Validation rows, when the splits come as separate files.")
    parser.add_argument("--test_set", help="Test rows, when the splits come as separate files.")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output_directory", default="results", help="Where run directories are created (default: results).")
    parser.add_argument("--experiment_name", default="experiment", help="First part of the run directory's name (default: experiment).")
    parser.add_argument("--model_name", default="run", help="Second part of the run directory's name (default: run).")
    parser.add_argument("--random_seed", type=int, default=None, help="Overrides trainer.seed for this run.")
    parser.add_argument("--skip_save_model", action="store_true", help="Do not save the trained model (statistics are still written).")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN_DIR",
                        help="Continue an interrupted run from its last checkpoint: the run directory, or no value for the latest run of this experiment.")


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model_path", required=True, help="A trained model directory: <run>/model.")
    parser.add_argument("--dataset", required=True, help=f"Rows to predict. {DATASET_HELP}")
    parser.add_argument("--batch_size", type=int, default=None, help="Rows per generation batch; lower it to use less memory.")
    parser.add_argument("--output_directory", default="results", help="Where the prediction directory is created (default: results).")
    parser.add_argument("--split", choices=["full", "training", "validation", "test"], default="full",
                        help="Which split of --dataset to use (default: full).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ludwig_llm",
        description="Declarative fine-tuning, prompting and evaluation of large language models.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="Fine-tune (or set up for in-context learning) a model from a config and a dataset.")
    train.add_argument("--config", required=True, help="YAML config file.")
    _add_dataset_arguments(train)
    _add_run_arguments(train)
    train.set_defaults(handler=_train)

    experiment = commands.add_parser("experiment", help="Train, then evaluate on the test split, in one run directory.")
    experiment.add_argument("--config", required=True, help="YAML config file.")
    _add_dataset_arguments(experiment)
    _add_run_arguments(experiment)
    experiment.set_defaults(handler=_experiment)

    predict = commands.add_parser("predict", help="Generate predictions with a trained model.")
    _add_predict_arguments(predict)
    predict.set_defaults(handler=_predict)

    evaluate = commands.add_parser("evaluate", help="Predict and compute metrics against the dataset's targets.")
    _add_predict_arguments(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    preprocess = commands.add_parser("preprocess", help="Render prompts and tokenize a dataset; --debug shows what the model is trained on.")
    preprocess.add_argument("--config", required=True, help="YAML config file.")
    _add_dataset_arguments(preprocess)
    preprocess.add_argument("--debug", action="store_true", help="Print the rendered prompt, token ids and loss mask of the first rows.")
    preprocess.add_argument("--rows", type=int, default=3, help="Rows shown with --debug (default: 3).")
    preprocess.set_defaults(handler=_preprocess)

    check = commands.add_parser("check_config", help="Validate a config; prints every problem and exits 1 if there is one.")
    check.add_argument("--config", required=True, help="YAML config file.")
    check.set_defaults(handler=_check_config)

    render = commands.add_parser("render_config", help="Print the config with every default filled in (what will actually run).")
    render.add_argument("--config", required=True, help="YAML config file.")
    render.add_argument("--output", help="Write to this file instead of standard output.")
    render.set_defaults(handler=_render_config)

    export = commands.add_parser("export_schema", help="Write the JSON Schema of the config, for editor autocompletion.")
    export.add_argument("--output", help="Write to this file instead of standard output.")
    export.set_defaults(handler=_export_schema)
    return parser


def _version() -> str:
    from ludwig_llm import __version__

    return f"ludwig_llm {__version__}"


def _write_or_print(text: str, output: Optional[str]) -> None:
    if output:
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as error:
            raise UserError(f"cannot write {output}: {error.strerror}.") from None
        print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def _check_config(args) -> int:
    from ludwig_llm.schema import load_config

    load_config(args.config)
    print(f"{args.config}: valid")
    return 0


def _render_config(args) -> int:
    from ludwig_llm.schema import load_config

    config = load_config(args.config)
    _write_or_print(yaml.safe_dump(config.to_dict(), sort_keys=False), args.output)
    return 0


def _export_schema(args) -> int:
    from ludwig_llm.schema.json_schema import config_json_schema

    _write_or_print(json.dumps(config_json_schema(), indent=2) + "\n", args.output)
    return 0


def _datasets(args) -> Dict[str, Optional[str]]:
    return {
        "dataset": args.dataset,
        "training_set": args.training_set,
        "validation_set": args.validation_set,
        "test_set": args.test_set,
    }


def _run_options(args) -> dict:
    return {
        "output_directory": args.output_directory,
        "experiment_name": args.experiment_name,
        "model_name": args.model_name,
        "random_seed": args.random_seed,
        "skip_save_model": args.skip_save_model,
        "resume": args.resume,
    }


def _train(args) -> int:
    from ludwig_llm.api import LudwigLLM

    model = LudwigLLM(args.config)
    result = model.train(**_datasets(args), **_run_options(args))
    print(f"run directory: {result.run_directory}")
    return 0


def _experiment(args) -> int:
    from ludwig_llm.api import LudwigLLM

    model = LudwigLLM(args.config)
    result = model.experiment(**_datasets(args), **_run_options(args))
    print(f"run directory: {result.run_directory}")
    return 0


def _predict(args) -> int:
    from ludwig_llm.api import LudwigLLM

    model = LudwigLLM.load(args.model_path)
    result = model.predict(args.dataset, batch_size=args.batch_size, output_directory=args.output_directory, split=args.split)
    print(f"predictions: {result.output_directory}")
    return 0


def _evaluate(args) -> int:
    from ludwig_llm.api import LudwigLLM

    model = LudwigLLM.load(args.model_path)
    result = model.evaluate(args.dataset, batch_size=args.batch_size, output_directory=args.output_directory, split=args.split)
    print(json.dumps(result.statistics, indent=2, default=str))
    print(f"evaluation: {result.output_directory}")
    return 0


def _preprocess(args) -> int:
    from ludwig_llm.api import LudwigLLM

    model = LudwigLLM(args.config)
    model.preprocess(**_datasets(args), debug=args.debug, debug_rows=args.rows)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigValidationError as error:
        print(error.render(), file=sys.stderr)
        return 1
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
