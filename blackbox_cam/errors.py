"""The one exception type users see.

Every problem caused by the user's input (a file, an option, a model the tool cannot handle)
is raised as :class:`BlackboxCamError` with a message that names the thing, says what is
wrong and what to do. The CLI prints such messages on one line without a traceback; any
other exception is a bug in blackbox-cam.
"""
from __future__ import annotations

import os
from pathlib import Path


class BlackboxCamError(Exception):
    """A problem with the user's input, explained in one line."""


class BudgetExceeded(BlackboxCamError):
    """A method asked the model for more queries than its budget allows."""


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    """``Path(path)`` if it is an existing file, else a one-line error saying what was expected."""
    p = Path(path)
    if not p.exists():
        raise BlackboxCamError(f"{p}: no such file; pass the path of {what}")
    if not p.is_file():
        raise BlackboxCamError(f"{p}: is not a file; pass the path of {what}")
    return p
