"""One source for every default and bound: the command line's options are the configuration's keys.

Every analysis command builds its options from the configuration models (analyses/cli/options.py). These tests
hold the command line and the configuration to the same defaults, the same keys and the same choices, and check
that a bad value is reported naming the door it came through.
"""

from __future__ import annotations

from typing import get_args

import pytest

from isletbayes.analyses.cli import app, binary_command, cpeptide_command, design_command, durability_command, main
from isletbayes.analyses.cli.options import config_from_options
from isletbayes.analyses.config import Block, MainJobConfig, TauPrior

COMMANDS = {"binary": binary_command.binary, "cpeptide": cpeptide_command.cpeptide,
            "design": design_command.design, "durability": durability_command.durability}
#: keys only the main job reads: which sections it runs (the analysis commands each are one section)
MAIN_JOB_ONLY = {"sections.binary", "sections.cpeptide", "sections.design", "sections.durability"}


def leaf_keys(block: type[Block] = MainJobConfig, prefix: str = "") -> set[str]:
    out = set()
    for name, field in block.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, Block):
            out |= leaf_keys(field.annotation, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def value_at(config, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


@pytest.mark.parametrize("command", COMMANDS)
def test_every_cli_default_is_the_configurations_default(command):
    options = COMMANDS[command].config_options
    config = config_from_options(options, {o.param: o.default for o in options})
    defaults = MainJobConfig()
    for option in options:
        assert value_at(config, option.key) == value_at(defaults, option.key), option.primary


def test_cli_options_and_configuration_keys_are_the_same_set():
    from_cli = {o.key for command in COMMANDS.values() for o in command.config_options}
    assert from_cli == leaf_keys() - MAIN_JOB_ONLY


def test_each_option_is_an_option_of_its_command():
    import typer

    group = typer.main.get_command(app)
    for name, command in COMMANDS.items():
        params = group.commands[name].params
        flags = {f for p in params for f in (*p.opts, *getattr(p, "secondary_opts", []))}
        for option in command.config_options:
            assert option.primary in flags, f"{name}: {option.primary} is not an option"
            param = next(p for p in params if option.primary in p.opts)
            assert param.default == option.default


def test_choices_are_the_models_choices():
    from isletbayes.models.map_prior import TAU_PRIORS
    from isletbayes.models.prior_panel import PANEL_MEMBERS

    assert set(get_args(TauPrior)) == set(TAU_PRIORS)
    panel = MainJobConfig.model_fields["priors"].annotation.model_fields["panel"].annotation
    assert set(get_args(get_args(panel)[0])) == set(PANEL_MEMBERS)


@pytest.mark.parametrize("tau", get_args(TauPrior))
def test_every_tau_prior_is_accepted_through_both_doors(tau, tmp_path):
    options = binary_command.binary.config_options
    values = {o.param: o.default for o in options}
    values["priors__map__tau_prior"] = tau
    assert config_from_options(options, values).priors.map.tau_prior == tau
    from isletbayes.analyses.config import config_from_dict

    assert config_from_dict({"priors": {"map": {"tau_prior": tau}}}).priors.map.tau_prior == tau


@pytest.mark.parametrize("args, option, message", [
    (["design", "--n-min", "50", "--n-max", "30"], "--n-max", "must be >= --n-min (50)"),
    (["design", "--gamma", "1.5"], "--gamma", "strictly between 0 and 1"),
    (["design", "--discount-ess", "20"], "--discount-ess", "must lie in"),
    (["binary", "--tau-prior", "gamma"], "--tau-prior", "must be one of"),
    (["binary", "--tau-scale", "-1"], "--tau-scale", "greater than 0"),
    (["binary", "--threshold", "1.5"], "--threshold", "strictly between 0 and 1"),
    (["binary", "--prior", "optimistic"], "--prior", "must be one of"),
    (["binary", "--comparators", "Nobody 2020"], "--comparators", "unknown comparator study"),
    (["durability", "--follow-up-simulations", "5"], "--follow-up-simulations", "greater than or equal to 10"),
    (["cpeptide", "--plateau-median", "0"], "--plateau-median", "greater than 0"),
    (["design", "--seed", "-1"], "--seed", "greater than or equal to 0"),
])
def test_a_bad_option_is_named_as_the_option(args, option, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("isletbayes: error: ")
    assert f"option {option}: " in err and message in err
    assert "key '" not in err  # the door was an option, not a configuration file


def test_usage_errors_share_the_one_line_format(capsys):
    assert main(["design", "--no-such-option"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("isletbayes: error: ") and "--help" in err
    assert main(["design", "--n-min", "many"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--n-min" in err and "--help" in err


@pytest.mark.parametrize("argv", [["--help"], ["data", "check", "{example}"], ["data", "check", "{example}", "--json"],
                                  ["data", "summary"], ["data", "summary", "--json"], ["design", "--help"]])
def test_fast_commands_import_no_mcmc_and_no_table_package(argv, fresh_command):
    """Help and the data commands answer from the validated rows: no MCMC package, and neither pandas nor numpy
    nor scipy (pandas alone is most of a second of start-up on 2 cores)."""
    from isletbayes.data import PARTICIPANT_EXAMPLE

    run = fresh_command([a.format(example=PARTICIPANT_EXAMPLE) for a in argv])
    assert run.exit_code == 0
    assert run.loaded(*run.MCMC_PACKAGES, "pandas", "numpy", "scipy", "matplotlib") == []


def test_an_exact_design_from_its_kept_panel_imports_neither_scipy_stats_nor_matplotlib(tmp_path, fresh_command):
    """The exact design path (design priors without MCMC, the day-365 estimand) with its design-prior panel kept
    computes with the incomplete beta function and its inverse: scipy.stats (about 0.8 s of start-up here) and
    matplotlib stay unimported. (The first call, which fits the panel's beta mixtures, uses scipy.stats.)"""
    argv = ["design", "--n-min", "20", "--n-max", "30", "--estimand", "insulin_independence_day365",
            "--design-prior", "phase12,discounted,robust", "--cache-dir", str(tmp_path / "cache")]
    first, kept = fresh_command(argv), fresh_command(argv)
    assert first.exit_code == kept.exit_code == 0
    assert kept.loaded(*kept.MCMC_PACKAGES, "scipy.stats", "matplotlib") == []
    assert kept.output == first.output  # the same design, from the kept panel


def test_help_lists_every_command_as_its_own_help_does_without_importing_them(capsys, fresh_command):
    """`isletbayes --help` lists the analysis commands from their functions' docstrings read from source: the
    listing is the one typer gives with every command loaded, and no command module is imported for it."""
    import typer

    from isletbayes.analyses.cli import LAZY_COMMANDS, app

    group = typer.main.get_command(app)
    ctx = group.make_context("isletbayes", ["--help"], resilient_parsing=True)
    capsys.readouterr()
    group.format_help(ctx, None)
    listed = capsys.readouterr().out
    for name in LAZY_COMMANDS:
        group.commands[name]  # loads the real command
    group.format_help(ctx, None)
    assert capsys.readouterr().out == listed
    assert all(f" {name} " in listed for name in LAZY_COMMANDS)
    run = fresh_command(["--help"])
    assert run.exit_code == 0
    assert [m for m in run.loaded("isletbayes.analyses.cli") if m.endswith("_command")] == [
        "isletbayes.analyses.cli.data_command"]
