"""What the command line shows: third-party notices hidden unless asked for, metrics as a table.

Libraries announce things a user cannot act on (bitsandbytes' optional `kernels` package, DeepSpeed's
accelerator detection, transformers' FutureWarnings about its own internals). They stay hidden unless
`--verbose` or `--logging_level debug` is given. Progress bars are not log messages and always show.
No heavy import here: this runs before the command's libraries load, which is what lets it quiet them.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Dict

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Loggers of libraries whose warnings are notices for their developers, not for our users.
THIRD_PARTY_LOGGERS = ("bitsandbytes", "DeepSpeed", "accelerate", "peft", "datasets", "torch.distributed", "httpx")
_THIRD_PARTY_WARNINGS = r"(transformers|peft|torch|bitsandbytes|accelerate|datasets|deepspeed)(\.|$)"


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def configure_console(logging_level: str = "warning", verbose: bool = False) -> None:
    """Set up logging for a command; unless verbose (or debug), silence third-party notices and warnings."""
    level = LEVELS[logging_level]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ludwig_llm").setLevel(level)
    if verbose or level <= logging.DEBUG:
        os.environ["TRANSFORMERS_VERBOSITY"] = "info" if level <= logging.INFO else "warning"
        return
    # Read when transformers is imported, which happens after this, in the command's handler.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=_THIRD_PARTY_WARNINGS)
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        # DeepSpeed resets its logger's level when it is imported; a filter survives that.
        logger.addFilter(_BelowError())


def metrics_table(statistics: Dict[str, Any]) -> str:
    """Each output feature's scalar metrics as an aligned text table (lists and matrices stay in the JSON file)."""
    lines = []
    for feature, metrics in statistics.items():
        rows = [(name, value) for name, value in (metrics or {}).items()
                if isinstance(value, (int, float, str)) and not isinstance(value, bool)]
        if not rows:
            continue
        width = max(len("metric"), *(len(name) for name, _ in rows))
        lines += [f"{feature}:", f"  {'metric'.ljust(width)}  value", f"  {'-' * width}  {'-' * 10}"]
        lines += [f"  {name.ljust(width)}  {_format(value)}" for name, value in rows]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)
