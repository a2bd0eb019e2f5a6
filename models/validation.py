"""The one exception the model layer raises for a value outside a model's domain.

Models know nothing of files, options or configuration keys: they say which of their own inputs is wrong
(``parameter``, or for a data table ``source``/``column``/``line``), and the command line maps that to the
option or configuration key the user set (:mod:`isletbayes.analyses.cli`). It is a :class:`ValueError`, so
code that calls the models directly can catch it as one.
"""

from __future__ import annotations


class ModelInputError(ValueError):
    """A model input outside its domain: ``parameter`` names the argument or field, and for a data table
    ``source`` (its name or path), ``column`` and ``line`` (1-based, header = line 1) say where."""

    def __init__(self, message: str, *, parameter: str | None = None, source: str | None = None,
                 column: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.parameter = parameter
        self.source = None if source is None else str(source)
        self.column = column
        self.line = line
        where = [w for w in (self.source, None if line is None else f"line {line}",
                             None if column is None else f"column '{column}'", parameter) if w]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
