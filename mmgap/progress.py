"""Progress bars: widgets in an interactive notebook (JupyterLab with ipywidgets), text everywhere else.

``tqdm.auto`` picks widget bars inside any IPython kernel. A headless run (papermill, ``make demo``, the
tests) has no one to look at widgets and stores them as opaque widget state, so text bars are forced there
with ``MMGAP_PROGRESS=text`` (``mmgap.run_notebooks`` sets it for the kernels it starts).
"""

from __future__ import annotations

import os
from typing import Any


def progress(*args: Any, **kwargs: Any) -> Any:
    """A tqdm bar: ``tqdm.auto`` (widgets in Jupyter) unless ``MMGAP_PROGRESS=text`` asks for plain text."""
    if os.environ.get("MMGAP_PROGRESS", "auto") == "text":
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)
