"""The ``isletbayes`` command line: a thin shell over the analyses' typed entry points.

One module per command (``data_command``, ``binary_command``, ``cpeptide_command``, ``design_command``,
``durability_command``, ``run_command``); each builds its options from the configuration models
(:mod:`.options`), calls the analysis entry point, and prints tables or JSON. Only this shell imports
:mod:`isletbayes.reports` (the ``run`` and ``report`` commands compose the analyses and the report). Modules that
need PyMC are imported inside the commands, so ``isletbayes --help`` and the ``data`` commands start without it.

Every user mistake (:class:`~isletbayes.data.errors.InputError`, a model input out of its domain, a usage error
caught by click) prints one line, ``isletbayes: error: <where>: <what>``, and exits with status 2; an interrupt
exits with status 130. Nothing else is caught: a bug keeps its traceback.
"""

from __future__ import annotations

import sys

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


def _usage_line(err) -> str:
    """A usage error of typer's bundled click in the project's one-line form, with a hint to --help."""
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    message = " ".join(message.split())
    ctx = getattr(err, "ctx", None)
    command = ctx.command_path if ctx is not None else "isletbayes"
    return f"isletbayes: error: {message} (see `{command} --help`)"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user mistakes exit 2 with one line, interrupts 130."""
    from isletbayes.data.errors import InputError
    from isletbayes.models.validation import ModelInputError

    try:
        app(args=argv, standalone_mode=False, prog_name="isletbayes")
    except (InputError, ModelInputError) as err:
        print(f"isletbayes: error: {err}", file=sys.stderr)
        return 2
    except typer.Exit as ex:
        return ex.exit_code
    except typer.Abort:
        print("isletbayes: interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as err:  # typer's bundled click: usage errors, bad values, missing files
        print(_usage_line(err), file=sys.stderr)
        return getattr(err, "exit_code", 2) or 2
    except KeyboardInterrupt:
        print("isletbayes: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
