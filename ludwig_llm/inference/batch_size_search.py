"""`batch_size: auto`: find the batch size that fits in memory and processes the most rows per second.

Powers of two from 1 are tried in turn, each on real rows (the longest, so the choice fits every batch), timed after
one warm-up pass; the search stops at the first size that runs out of memory, at the rows available, at
MAX_BATCH_SIZE, or once throughput has fallen twice in a row. The trials are returned for the run's statistics.
"""

from __future__ import annotations

import time
from typing import Callable, List, Tuple

import torch

MAX_BATCH_SIZE = 256


def search_batch_size(run: Callable[[int], None], rows_available: int, device: torch.device) -> Tuple[int, List[dict]]:
    """``run(size)`` processes one batch of ``size`` rows. Returns the chosen size and every trial."""
    trials: List[dict] = []
    limit = max(1, min(rows_available, MAX_BATCH_SIZE))
    size, falls = 1, 0
    while size <= limit:
        try:
            run(size)  # warm-up: allocator, kernels, lazy state
            _synchronize(device)
            started = time.perf_counter()
            run(size)
            _synchronize(device)
            seconds = max(time.perf_counter() - started, 1e-9)
        except torch.OutOfMemoryError:
            trials.append({"batch_size": size, "out_of_memory": True})
            _free(device)
            break
        trials.append({"batch_size": size, "rows_per_second": size / seconds})
        best_so_far = max(t["rows_per_second"] for t in trials if "rows_per_second" in t)
        falls = falls + 1 if trials[-1]["rows_per_second"] < best_so_far else 0
        if falls >= 2:
            break
        size *= 2
    fitting = [t for t in trials if "rows_per_second" in t]
    if not fitting:  # even one row does not fit: report it as the error it is
        raise torch.OutOfMemoryError("batch_size: auto found no batch size that fits in memory, not even 1 row.")
    return max(fitting, key=lambda t: t["rows_per_second"])["batch_size"], trials


def longest_first(lengths: List[int]) -> List[int]:
    """Row indices, longest first: a batch of the first n rows is the most memory any n rows need."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
