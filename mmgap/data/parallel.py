"""Ordered parallel map over clips with a tqdm progress bar (process pool; workers=0 runs serially)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import torch

from mmgap.progress import progress as progress_bar

T = TypeVar("T")
R = TypeVar("R")


def default_workers(n_items: int) -> int:
    """Processes to use for `n_items` clips: one per core (at most 8), serial for tiny jobs."""
    if n_items < 32:
        return 0
    return max(0, min(8, os.cpu_count() or 1))


def _init_worker() -> None:
    # One intra-op thread per process: the pool already uses every core.
    torch.set_num_threads(1)


def pmap(fn: Callable[[T], R], items: Iterable[T], total: int, workers: int | None, desc: str,
         chunksize: int | None = None, progress: bool = True) -> Iterator[R]:
    """Yield fn(item) in order, over `workers` processes (None: automatic, 0: serial), with a progress bar."""
    workers = default_workers(total) if workers is None else workers
    bar: Any = progress_bar(total=total, desc=desc, disable=not progress, mininterval=1.0)
    try:
        if workers <= 1:
            for item in items:
                yield fn(item)
                bar.update(1)
            return
        chunk = chunksize or max(1, min(64, total // (workers * 8) or 1))
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as ex:
            for result in ex.map(fn, items, chunksize=chunk):
                yield result
                bar.update(1)
    finally:
        bar.close()
