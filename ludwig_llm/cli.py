"""The `ludwig_llm` command line. The API (and with it torch) is imported inside the handlers that
need it, so `--help` and the config commands answer at once."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Callable, Dict, List, Optional

import yaml

from ludwig_llm import __version__
from ludwig_llm.console import LEVELS, configure_console, metrics_table
from ludwig_llm.errors import ConfigValidationError, UserError
from ludwig_llm.results import write_text_atomically
from ludwig_llm.schema import load_config
from ludwig_llm.schema.json_schema import config_json_schema

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

    _add_deployment_commands(commands)

    export = commands.add_parser("export_schema", help="Write the JSON Schema of the config, for editor autocompletion.")
    export.add_argument("--output", help="Write to this file instead of standard output.")
    export.set_defaults(handler=_export_schema)
    for command in commands.choices.values():
        command.add_argument("--verbose", action="store_true", help="Also show third-party libraries' notices and warnings.")
        command.add_argument("--logging_level", choices=list(LEVELS), default="warning",
                             help="Log level (default: warning); debug also shows third-party notices.")
        if command.prog.split()[-1] != "preprocess":  # preprocess --debug also shows the rendered rows
            command.add_argument("--debug", action="store_true", help="On an error, also print its traceback.")
    return parser


def _add_deployment_commands(commands) -> None:
    """Commands that use a trained model after training (implemented in ludwig_llm.serve and friends)."""
    serve = commands.add_parser("serve", help="Serve a trained model over HTTP: /predict, /batch_predict and OpenAI-compatible /v1 endpoints.")
    serve.add_argument("--model_path", required=True, help="A trained model directory: <run>/model.")
    serve.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface).")
    serve.add_argument("--port", type=int, default=8000, help="Port to listen on (default: 8000).")
    serve.set_defaults(handler=_serve)

    export = commands.add_parser("export", help="Write a trained model as plain Hugging Face files: merged weights, or the adapter.")
    export.add_argument("--model_path", required=True, help="A trained model directory: <run>/model.")
    export.add_argument("--output_directory", required=True, help="Where to write the files (a new or empty directory).")
    export.add_argument("--format", choices=["merged", "adapter"], default="merged",
                        help="merged: the adapter merged into the base model (safetensors, tokenizer, generation config); "
                             "adapter: the peft adapter files (default: merged).")
    export.set_defaults(handler=_export)

    chat = commands.add_parser("chat", help="Chat with a trained model in the terminal, answers streamed as they are generated.")
    chat.add_argument("--model_path", required=True, help="A trained model directory: <run>/model.")
    chat.add_argument("--system", help="A system message that starts the conversation.")
    chat.add_argument("--max_history_tokens", type=int, default=None,
                      help="Most prompt tokens the conversation may take; older turns are dropped (default: the model's context "
                           "length minus generation.max_new_tokens).")
    chat.set_defaults(handler=_chat)

    visualize = commands.add_parser("visualize", help="Plot the learning curves of one or more runs side by side as a PNG.")
    visualize.add_argument("--run", nargs="+", required=True, metavar="RUN_DIR", help="Run directories (with training_statistics.json).")
    visualize.add_argument("--output", default="learning_curves_comparison.png",
                           help="The PNG to write (default: learning_curves_comparison.png).")
    visualize.set_defaults(handler=_visualize)

    upload = commands.add_parser("upload", help="Upload a trained model to the Hugging Face Hub (token from HF_TOKEN).")
    upload.add_argument("--model_path", required=True, help="A trained model directory: <run>/model.")
    upload.add_argument("--repo_id", required=True, help="The Hub repository, ORG/NAME; created if it does not exist.")
    upload.add_argument("--merged", action="store_true", help="Upload the merged plain transformers model instead of the model directory.")
    upload.add_argument("--private", action="store_true", help="Create the repository as private.")
    upload.set_defaults(handler=_upload)


def _serve(args) -> int:
    try:
        from ludwig_llm.serve.app import serve
    except ModuleNotFoundError as error:
        if error.name not in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise
        raise UserError(f"`serve` needs {error.name}: pip install 'ludwig_llm[serve]'.") from None

    serve(args.model_path, host=args.host, port=args.port)
    return 0


def _export(args) -> int:
    from ludwig_llm.export import export_model

    print(f"exported: {export_model(args.model_path, args.output_directory, args.format)}")
    return 0


def _chat(args) -> int:
    from ludwig_llm.chat import run_chat

    run_chat(args.model_path, system=args.system, max_history_tokens=args.max_history_tokens)
    return 0


def _visualize(args) -> int:
    from ludwig_llm.plots import compare_runs

    print(f"wrote {compare_runs(args.run, args.output)}")
    return 0


def _upload(args) -> int:
    from ludwig_llm.hub_upload import upload_model

    print(f"uploaded: {upload_model(args.model_path, args.repo_id, merged=args.merged, private=args.private)}")
    return 0


def _version() -> str:
    return f"ludwig_llm {__version__}"


def _write_or_print(text: str, output: Optional[str]) -> None:
    if output:
        try:
            write_text_atomically(output, text)
        except OSError as error:
            raise UserError(f"cannot write {output}: {error.strerror}.") from None
        print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def _check_config(args) -> int:
    load_config(args.config)
    print(f"{args.config}: valid")
    return 0


def _render_config(args) -> int:
    config = load_config(args.config)
    _write_or_print(yaml.safe_dump(config.to_dict(), sort_keys=False), args.output)
    return 0


def _export_schema(args) -> int:
    _write_or_print(json.dumps(config_json_schema(), indent=2) + "\n", args.output)
    return 0


def _api():
    """The API class, imported on first use: it brings torch, which `--help` and the config commands never need."""
    from ludwig_llm.api import LudwigLLM

    return LudwigLLM


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
    model = _api()(args.config)
    result = model.train(**_datasets(args), **_run_options(args))
    print(f"run directory: {result.run_directory}")
    return 0


def _experiment(args) -> int:
    model = _api()(args.config)
    result = model.experiment(**_datasets(args), **_run_options(args))
    if result.test_statistics:
        print(metrics_table(result.test_statistics))
    print(f"run directory: {result.run_directory}")
    return 0


def _predict(args) -> int:
    model = _api().load(args.model_path)
    result = model.predict(args.dataset, batch_size=args.batch_size, output_directory=args.output_directory, split=args.split)
    print(f"predictions: {result.output_directory}")
    return 0


def _evaluate(args) -> int:
    model = _api().load(args.model_path)
    result = model.evaluate(args.dataset, batch_size=args.batch_size, output_directory=args.output_directory, split=args.split)
    print(metrics_table(result.statistics))
    print(f"evaluation: {result.output_directory}")
    return 0


def _preprocess(args) -> int:
    model = _api()(args.config)
    model.preprocess(**_datasets(args), debug=args.debug, debug_rows=args.rows)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    configure_console(args.logging_level, verbose=args.verbose)
    try:
        return handler(args)
    except ConfigValidationError as error:
        _traceback_if(args)
        print(error.render(), file=sys.stderr)
        return 1
    except UserError as error:
        _traceback_if(args)
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a file or disk fault that no layer below named: still one line, with the path
        _traceback_if(args)
        where = f" {error.filename}" if error.filename else ""
        print(f"error:{where}: {error.strerror or error}." + ("" if args.debug else " (--debug shows the traceback)"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _traceback_if(args) -> None:
    if getattr(args, "debug", False):
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
