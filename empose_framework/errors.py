"""User-facing errors: one paragraph that names the file, the field and the fix.

The CLI prints an `EmposeError` without a traceback (unless `--debug`) and exits with its
`exit_code`. Anything else that escapes is a bug in empose or a plugin and is shown in full.
"""

from __future__ import annotations


class EmposeError(Exception):
    """A problem the user can fix: bad recipe, missing data, unknown plugin, ..."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RecipeError(EmposeError):
    """A recipe that does not validate; the message names the recipe file and the key path."""


class PluginError(EmposeError):
    """A plugin that cannot be loaded, or two plugins that claim one name."""


class DataError(EmposeError):
    """Missing, truncated or corrupt data on disk (names the file and what is wrong)."""
