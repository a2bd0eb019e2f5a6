"""The ``isletbayes`` command line.

Every subcommand is a thin wrapper over a function in ``isletbayes.analyses``; a user's mistake
(:class:`~isletbayes.data.errors.InputError`, or a bad option caught by the CLI library) prints one clear
line to stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import sys

import click
import typer

from isletbayes.data.errors import InputError

app = typer.Typer(
    name="isletbayes",
    help="Bayesian re-analysis of the zimislecel (VX-880) phase 1/2 trial and phase 3 planning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# --- subcommands: each analysis module registers its own commands here --------------------------------
# (one line per module; keep them in the order of the data flow)
# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, mapping user errors to exit status 2."""
    try:
        app(args=argv, standalone_mode=False)
    except InputError as err:
        print(f"isletbayes: error: {err}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as ex:
        return ex.exit_code
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Abort:
        print("isletbayes: aborted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
