"""Errors a person can act on.

Every exception here carries what the user needs (file, line, key, order id) in its message.
The CLI entry point renders ``str(error)`` as one line on stderr and exits with ``exit_code``:
1 when an operation was refused or failed, 2 for usage and configuration errors (SPEC §5).
"""

from __future__ import annotations

from ffctl.i18n import _


class FfctlError(Exception):
    """Base class: the operation was refused or failed (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(FfctlError):
    """The command line itself is wrong (exit 2)."""

    exit_code = 2


class ConfigProblem:
    """One thing wrong in a config file: where it is and what is wrong."""

    __slots__ = ("file", "key", "message", "line")

    def __init__(self, file: str, key: str, message: str, line: int | None = None) -> None:
        self.file, self.key, self.message, self.line = file, key, message, line

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"ConfigProblem({str(self)!r})"


class ConfigError(FfctlError):
    """The configuration is invalid (exit 2). Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = _("invalid config: {problem}").format(problem=self.problems[0])
        else:
            lines = "\n".join(f"  {p}" for p in self.problems)
            message = _("invalid config ({n} problems):\n{lines}").format(n=len(self.problems), lines=lines)
        super().__init__(message, hint=_("Fix the file and run `ffctl config check`."))


class NotFound(FfctlError):
    """A named thing (order, SKU, receipt, requisition, ...) does not exist (exit 1)."""


class Conflict(FfctlError):
    """The store's state forbids the operation (exit 1): wrong node, already shipped, ..."""


class PermissionDenied(FfctlError):
    """The acting user may not do this (exit 1)."""


class StoreError(FfctlError):
    """The store cannot be reached or is not at the expected schema version (exit 1)."""


from ffctl.core.secrets import mask_url  # noqa: E402,F401 - the one masking function (core/secrets.py)
