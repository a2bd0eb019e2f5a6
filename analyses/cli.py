"""The ``isletbayes`` command line.

Every subcommand is a thin wrapper over a function in ``isletbayes.analyses``; a user's mistake
(:class:`~isletbayes.data.errors.InputError`, or a bad option caught by the CLI library) prints one clear
line to stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from isletbayes.data.errors import InputError
from isletbayes.models.validation import ModelInputError

app = typer.Typer(
    name="isletbayes",
    help="Bayesian re-analysis of the zimislecel (VX-880) phase 1/2 trial and phase 3 planning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# --- subcommands: each analysis module registers its own commands here --------------------------------
# (one line per module; keep them in the order of the data flow)
from isletbayes.analyses import data_commands as _data_commands; app.add_typer(_data_commands.app, name="data")  # noqa: E402,E702
from isletbayes.analyses import binary as _binary; app.command("binary")(_binary.cli)  # noqa: E402,E702
from isletbayes.analyses import cpeptide as _cpeptide; app.command("cpeptide")(_cpeptide.cli)  # noqa: E402,E702
from isletbayes.analyses import design as _design, durability as _durability; app.command("design")(_design.cli); app.command("durability")(_durability.cli)  # noqa: E402,E702,E501
from isletbayes.analyses import main_job as _main_job; app.command("run")(_main_job.run_cli); app.command("report")(_main_job.report_cli)  # noqa: E402,E702
# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, mapping user errors to exit status 2."""
    try:
        app(args=argv, standalone_mode=False)
    except InputError as err:
        print(f"isletbayes: error: {err}", file=sys.stderr)
        return 2
    except ModelInputError as err:
        print(f"isletbayes: error: {err}", file=sys.stderr)
        return 2
    except typer.Exit as ex:
        return ex.exit_code
    except typer.Abort:
        print("isletbayes: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as err:
        # Usage errors (missing/extra arguments, bad option values) from typer's bundled click.
        show = getattr(err, "show", None)
        if show is not None:
            show()
        else:
            print(f"isletbayes: error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    except KeyboardInterrupt:
        print("isletbayes: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
