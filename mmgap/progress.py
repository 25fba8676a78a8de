"""Progress bars: widgets in an interactive notebook (JupyterLab with ipywidgets), text everywhere else.

``tqdm.auto`` picks widget bars inside any IPython kernel. A headless run (papermill, ``make demo``, the
tests) has no one to look at widgets and stores them as opaque widget state, so text is forced there with
``MMGAP_PROGRESS=text`` (``mmgap.run_notebooks`` sets it for the kernels it starts). Text on a terminal is a
live tqdm bar; text that goes to a file or a notebook's output (papermill stores every redraw of a bar as a
new line) is one line per bar, written when it ends: ``adaptive runs (2 workers): 40/40 in 13 s``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any


def progress(*args: Any, **kwargs: Any) -> Any:
    """A tqdm bar: ``tqdm.auto`` (widgets in Jupyter) unless ``MMGAP_PROGRESS=text`` asks for plain text, which
    is a live bar on a terminal and a single closing line anywhere else."""
    if os.environ.get("MMGAP_PROGRESS", "auto") != "text":
        from tqdm.auto import tqdm
    elif _is_terminal(kwargs.get("file")):
        from tqdm import tqdm
    else:
        return OneLine(*args, **kwargs)
    return tqdm(*args, **kwargs)


def _is_terminal(stream: Any) -> bool:
    """Whether `stream` (default: stderr, as for tqdm) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return False


class OneLine:
    """A progress bar that writes one line when it closes (the tqdm calls the package uses, nothing else).

    A bar made with ``leave=False`` (a transient one, such as an epoch's) writes nothing."""

    def __init__(self, iterable: Iterable[Any] | None = None, desc: str | None = None, total: int | None = None,
                 file: Any = None, disable: bool = False, unit: str = "it", leave: bool = True, **_: Any) -> None:
        self.iterable, self.desc, self.file, self.unit = iterable, desc or "", file, unit
        self.disable = disable or not leave  # a transient bar (leave=False, e.g. one epoch) leaves no line
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.n, self.postfix = total, 0, ""
        self._start, self._closed = time.perf_counter(), False

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable or ():
                yield item
                self.n += 1
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> OneLine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count `n` more items done."""
        self.n += n

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Keep the latest postfix (``loss=0.3``) for the closing line."""
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Rename the bar."""
        self.desc = desc or ""

    def refresh(self) -> None:
        """Nothing to redraw: the line is written at the end."""

    @staticmethod
    def write(text: str, file: Any = None, **_: Any) -> None:
        """Print a message (tqdm.write's signature)."""
        print(text, file=file or sys.stdout)

    def close(self) -> None:
        """Write the bar's one line: its name, items done (of total) and the time taken."""
        if self._closed:
            return
        self._closed = True
        if self.disable:
            return
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        extra = f", {self.postfix}" if self.postfix else ""
        seconds = time.perf_counter() - self._start
        print(f"{self.desc + ': ' if self.desc else ''}{done} {self.unit if self.unit != 'it' else 'done'} in "
              f"{seconds:.0f} s{extra}", file=self.file or sys.stderr, flush=True)
