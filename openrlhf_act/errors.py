"""The errors a user sees: one line on stderr and exit code 2 (``openrlhf_act.cli``), never a traceback.

They live at the bottom of the layers so that every module can raise them without importing the CLI.
"""

from __future__ import annotations


class UsageError(Exception):
    """A user-facing error in how a command was called: printed as one line, exit code 2."""


class DataError(ValueError):
    """Bad input data. ``where`` names the file and line (``path:line``) when known."""

    def __init__(self, message: str, where: str | None = None):
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
