"""The ``isletbayes`` command line: a thin shell over the analyses' typed entry points.

One module per command (``data_command``, ``binary_command``, ``cpeptide_command``, ``design_command``,
``durability_command``, ``run_command``); each builds its options from the configuration models
(:mod:`.options`), calls the analysis entry point, and prints tables or JSON. Only this shell imports
:mod:`isletbayes.reports` (the ``run`` and ``report`` commands compose the analyses and the report). A command's
module is imported only when that command is looked up to run it or to show its own help (:class:`LazyGroup`;
``isletbayes --help`` lists the commands from their docstrings, read from the source), and modules that need PyMC
are imported inside the commands, so ``isletbayes --help`` and the ``data`` commands start without PyMC, and
without the analyses' configuration models either.

Every user mistake (:class:`~isletbayes.data.errors.InputError`, a model input out of its domain, a usage error
caught by click) and every file-system fault a user can cause (permission denied, a read-only or full disk, a file
where a folder is expected, a path removed during the run) prints one line, ``isletbayes: error: <where>: <what>``,
and exits with status 2; a mistake in an option adds a hint to the command's ``--help``. Ctrl-C stops any command
within seconds (:class:`~isletbayes.analyses.interrupts.InterruptGuard`) and exits with status 130 and one line
saying what was kept and how to resume; an interrupted run never exits 0. Warnings of isletbayes' own (a cache
that cannot be written, a damaged simulation record, an implausible value kept) print as one line each,
``isletbayes: warning: ...``. Nothing else is caught: a bug keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

import typer
from typer.core import TyperGroup

from isletbayes.analyses.cli import data_command

#: The analysis commands, in the order ``--help`` lists them: each one's module and function. A command's module
#: is imported when the command is looked up to run it (or to show its own --help), so that a command pays only
#: for its own imports: ``data ...`` never imports the analyses' configuration models, let alone PyMC.
#: ``isletbayes --help`` imports none of them: it lists each with its function's docstring, read from the source.
COMMANDS: dict[str, tuple[str, str]] = {
    "binary": ("binary_command", "binary"), "cpeptide": ("cpeptide_command", "cpeptide"),
    "design": ("design_command", "design"), "durability": ("durability_command", "durability"),
    "run": ("run_command", "run"), "report": ("run_command", "report")}
LAZY_COMMANDS: tuple[str, ...] = tuple(COMMANDS)


def _command_function(name: str):
    """The function of one analysis command (its module imported now; imported by name in the source, so that
    the architecture tests see every import)."""
    if name == "binary":
        from isletbayes.analyses.cli.binary_command import binary as function
    elif name == "cpeptide":
        from isletbayes.analyses.cli.cpeptide_command import cpeptide as function
    elif name == "design":
        from isletbayes.analyses.cli.design_command import design as function
    elif name == "durability":
        from isletbayes.analyses.cli.durability_command import durability as function
    elif name == "run":
        from isletbayes.analyses.cli.run_command import run as function
    elif name == "report":
        from isletbayes.analyses.cli.run_command import report as function
    else:
        raise KeyError(name)
    return function


def _load_command(name: str):
    """The click command of one analysis command, built by typer from its function."""
    single = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    single.command(name)(_command_function(name))
    return typer.main.get_command(single)


def _listed_command(name: str):
    """A stand-in for one analysis command in the group's --help listing: its name and its function's docstring
    (what typer lists), read from the module's source without importing it."""
    import ast
    import importlib.util
    from pathlib import Path

    from typer.core import TyperCommand

    source = Path(importlib.util.find_spec(f"{__name__}.{COMMANDS[name][0]}").origin).read_bytes()
    function = next(node for node in ast.parse(source).body
                    if isinstance(node, ast.FunctionDef) and node.name == COMMANDS[name][1])
    return TyperCommand(name, help=ast.get_docstring(function))


class _LazyCommands(MutableMapping):
    """A group's commands by name, in order; an analysis command is built on its first lookup."""

    def __init__(self, loaded: MutableMapping):
        self._loaded = dict(loaded)
        self._order = [*self._loaded, *(n for n in LAZY_COMMANDS if n not in self._loaded)]
        self.listing = False  # True while the group's --help lists the commands: stand-ins will do

    def __getitem__(self, name: str):
        if name not in self._loaded:
            if name not in LAZY_COMMANDS:
                raise KeyError(name)
            if self.listing:
                return _listed_command(name)
            self._loaded[name] = _load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._order.remove(name)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)


class LazyGroup(TyperGroup):
    """The top-level group: ``data`` is built at start-up, the analysis commands when first looked up."""

    def __init__(self, **attrs):
        super().__init__(**attrs)
        self.commands = _LazyCommands(self.commands)

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)

    def format_help(self, ctx, formatter) -> None:
        self.commands.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.commands.listing = False


app = typer.Typer(
    name="isletbayes",
    help="Bayesian re-analysis of the zimislecel (VX-880) phase 1/2 trial and phase 3 planning.",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_command.app, name="data")


def _command_path(argv: list[str] | None) -> str:
    """'isletbayes design' for ``design --n-max 0``: the command whose --help explains its options."""
    command = typer.main.get_command(app)
    path = ["isletbayes"]
    for token in (sys.argv[1:] if argv is None else argv):
        commands = getattr(command, "commands", None)  # a group (typer bundles its own click)
        if not commands or token.startswith("-"):
            break
        sub = commands.get(token)
        if sub is None:
            break
        path.append(token)
        command = sub
    return " ".join(path)


def _usage_line(err, argv: list[str] | None = None) -> str:
    """A usage error of typer's bundled click in the project's one-line form, with a hint to --help (of the
    subcommand the user typed, also where click failed before it got there)."""
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    message = " ".join(message.split())
    ctx = getattr(err, "ctx", None)
    command = ctx.command_path if ctx is not None else "isletbayes"
    typed = _command_path(argv)
    if len(typed) > len(command):
        command = typed
    return f"isletbayes: error: {message} (see `{command} --help`)"


def _error(message: str) -> int:
    print(f"isletbayes: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def _interrupted(guard) -> int:
    try:
        hint = guard.resume_hint()
    except Exception:  # noqa: BLE001 - counting what was kept must not hide the interrupt itself
        hint = "rerun the same command to resume"
    print(f"isletbayes: interrupted; {' '.join(hint.split())}", file=sys.stderr)
    return 130


@contextmanager
def _one_line_warnings():
    """isletbayes' own warnings as ``isletbayes: warning: ...`` lines (other packages' keep their format)."""
    import warnings

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("isletbayes"):
            print(f"isletbayes: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user mistakes and file-system faults exit 2 with one line, interrupts 130."""
    from isletbayes.analyses.interrupts import InterruptGuard
    from isletbayes.analyses.outputs import filesystem_error, is_filesystem_fault
    from isletbayes.data.errors import InputError
    from isletbayes.models.validation import ModelInputError

    guard = InterruptGuard()
    try:
        with guard, _one_line_warnings():
            code = app(args=argv, standalone_mode=False, prog_name="isletbayes")
    except InputError as err:
        hint = f" (see `{_command_path(argv)} --help`)" if err.option else ""
        return _error(f"{err}{hint}")
    except ModelInputError as err:
        return _error(str(err))
    except typer.Exit as ex:
        return ex.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted(guard)
    except typer.TyperException as err:  # typer's bundled click: usage errors, bad values, missing files
        if guard.interrupted:
            return _interrupted(guard)
        if type(err).__name__ == "NoArgsIsHelpError":  # the help was printed: that is the whole answer
            return getattr(err, "exit_code", 2) or 2
        print(_usage_line(err, argv), file=sys.stderr)
        return getattr(err, "exit_code", 2) or 2
    except OSError as err:
        if guard.interrupted:
            return _interrupted(guard)
        if not is_filesystem_fault(err):
            raise
        return _error(str(filesystem_error(err)))
    except Exception:
        if guard.interrupted:  # a sampler cut short by Ctrl-C can make the code after it fail: not a bug
            return _interrupted(guard)
        raise
    if guard.interrupted or code == 130:  # typer turns KeyboardInterrupt into exit code 130
        return _interrupted(guard)
    return code if isinstance(code, int) else 0


def run(argv: list[str] | None = None) -> None:
    """The process entry point (the ``isletbayes`` console script, ``python -m isletbayes.analyses.cli``): run
    :func:`main` and exit with its status.

    Once ``main`` has returned, the command's work is finished (or was stopped) and its status decided, so Ctrl-C is
    ignored for the rest of the process. Without that, a Ctrl-C during the interpreter's shutdown, when Python has
    put back the system's default SIGINT action, kills the process by the signal (status -2, nothing printed) after
    a run that had completed. A Ctrl-C that reaches us between ``main``'s own handling and that point exits 130."""
    import signal

    try:
        code = main(argv)
    except KeyboardInterrupt:
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
