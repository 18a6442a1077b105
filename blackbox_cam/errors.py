"""The one exception type users see.

Every problem caused by the user's input (a file, an option, a model the tool cannot handle)
is raised as :class:`BlackboxCamError` with a message that names the thing, says what is
wrong and what to do. The CLI prints such messages on one line without a traceback; any
other exception is a bug in blackbox-cam.
"""
from __future__ import annotations


class BlackboxCamError(Exception):
    """A problem with the user's input, explained in one line."""


class BudgetExceeded(BlackboxCamError):
    """A method asked the model for more queries than its budget allows."""
