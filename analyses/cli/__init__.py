"""The ``isletbayes`` command line: a thin shell over the analyses' typed entry points.

One module per command (``data_command``, ``binary_command``, ``cpeptide_command``, ``design_command``,
``durability_command``, ``run_command``); each builds its options from the configuration models
(:mod:`.options`), calls the analysis entry point, and prints tables or JSON. Only this shell imports
:mod:`isletbayes.reports` (the ``run`` and ``report`` commands compose the analyses and the report). Modules that
need PyMC are imported inside the commands, so ``isletbayes --help`` and the ``data`` commands start without it.

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
from contextlib import contextmanager

import typer

from isletbayes.analyses.cli import (binary_command, cpeptide_command, data_command, design_command,
                                     durability_command, run_command)

app = typer.Typer(
    name="isletbayes",
    help="Bayesian re-analysis of the zimislecel (VX-880) phase 1/2 trial and phase 3 planning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_command.app, name="data")
app.command("binary")(binary_command.binary)
app.command("cpeptide")(cpeptide_command.cpeptide)
app.command("design")(design_command.design)
app.command("durability")(durability_command.durability)
app.command("run")(run_command.run)
app.command("report")(run_command.report)


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


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
