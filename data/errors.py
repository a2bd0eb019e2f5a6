"""The one exception type for a user's mistake.

Anything a user can get wrong (a file, a row, a column, a CLI option, a configuration key) raises
:class:`InputError` with the place named. The CLI turns it into one line on stderr and exit status 2;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input, with where it is: file, line (1-based, header = line 1), column, option or key."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
        option: str | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.column = column
        self.option = option
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        if self.option is not None:
            where.append(f"option {self.option}")
        if self.key is not None:
            where.append(f"key '{self.key}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ImplausibleValueWarning(UserWarning):
    """Values outside a plausibility bound were accepted because the loader was called with
    ``allow_outliers=True``; one warning per file, naming how many and the first (file, line, column)."""
