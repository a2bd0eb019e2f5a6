"""The main job's configuration: defaults, merging, and one clear error naming the key for every mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from isletbayes.analyses.cli import main
from isletbayes.analyses.config import (MainJobConfig, config_from_dict, default_config_path, load_config,
                                        render_default_config)
from isletbayes.data.errors import InputError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_shipped_default_file_is_the_rendering_of_the_models():
    # defaults are written once, in the models; the YAML is rendered from them and must not drift
    assert default_config_path().read_text(encoding="utf-8") == render_default_config()
    assert load_config(default_config_path()) == MainJobConfig().model_copy(
        update={"data": load_config(default_config_path()).data})
    assert config_from_dict(yaml.safe_load(render_default_config())) == MainJobConfig()


def test_every_key_of_the_bundled_file_is_documented():
    lines = default_config_path().read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([a-z_0-9]+):", line)
        if not m:
            continue
        previous = lines[i - 1].strip() if i else ""
        # documented on its own line, or together with the key above it (pairs such as a mean and its sd)
        if "#" not in line and "#" not in previous:
            undocumented.append(m.group(2))
    # block headers (sections:, data:, ...) are documented by the comment line above them
    assert undocumented == [], f"keys with no comment on or above their line: {undocumented}"


def test_a_users_file_is_merged_over_the_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "design:\n  n_max: 60\nsampler:\n  draws: 200\n"))
    assert cfg.design.n_max == 60 and cfg.design.n_min == MainJobConfig().design.n_min
    assert cfg.sampler.draws == 200 and cfg.sampler.chains == 4
    assert cfg.priors == MainJobConfig().priors


def test_relative_data_paths_are_relative_to_the_config_file(tmp_path):
    cfg = load_config(write(tmp_path, "data:\n  counts: mine/counts.csv\n"))
    assert cfg.data.counts == tmp_path / "mine" / "counts.csv"


def test_empty_file_means_the_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing\n")) == MainJobConfig()


@pytest.mark.parametrize(
    "doc, key, message",
    [
        ({"design": {"n_min": 50, "n_max": 30}}, "design.n_max", "must be >= design.n_min"),
        ({"desing": {"n_max": 30}}, "desing", "unknown key"),
        ({"sampler": {"draw": 100}}, "sampler.draw", "unknown key"),
        ({"priors": {"map": {"tau_scale": -1}}}, "priors.map.tau_scale", "greater than 0"),
        ({"priors": {"panel": ["uniform", "optimistic"]}}, "priors.panel.1", "must be one of"),
        ({"priors": {"panel": []}}, "priors.panel", "at least one prior"),
        ({"sampler": {"chains": "four"}}, "sampler.chains", "integer"),
        ({"sampler": {"nuts_sampler": "stan"}}, "sampler.nuts_sampler", "must be one of"),
        ({"design": {"gamma": 1.5}}, "design.gamma", "strictly between 0 and 1"),
        ({"design": {"interim": [0.5, 1.2]}}, "design.interim", "strictly between 0 and 1"),
        ({"sections": {"binary": "maybe"}}, "sections.binary", "boolean"),
        ({"seed": -3}, "seed", "greater than or equal to 0"),
        ({"seed": 2**32}, "seed", "less than 4294967296"),
        ({"priors": {"map": {"tau_prior": "gamma"}}}, "priors.map.tau_prior", "must be one of"),
        ({"design": {"estimand": {"preset": "cpeptide_day365"}}}, "design", "no exact answer"),
        ({"design": {"endpoint": "cpeptide"}}, "design.endpoint", "replaced by design.estimand.preset"),
        ({"durability": {"n_draws": 2000}}, "durability.n_draws", "no longer a key"),
        ({"binary": {"thresholds": [0.5, "median"]}}, "binary.thresholds", "or 'comparator'"),
        ({"design": {"design_priors": ["phase12", "bogus"]}}, "design.design_priors", "unknown design prior 'bogus'"),
        ({"design": {"design_priors": ["beta:1"]}}, "design.design_priors", "cannot read prior 'beta:1'"),
        ({"design": {"design_priors": ["beta:2,-1"]}}, "design.design_priors", "A,B > 0"),
        ({"design": {"design_priors": ["mix:0.5,2,3;0.4,1,1"]}}, "design.design_priors", "must sum to 1"),
        ({"design": {"design_priors": ["mix:"]}}, "design.design_priors", "cannot read prior 'mix:'"),
        ({"design": {"analysis_prior": "flat"}}, "design.analysis_prior", "unknown prior 'flat'"),
        ({"design": {"analysis_prior": "beta:1,nan"}}, "design.analysis_prior", "cannot read prior"),
        ({"design": {"analysis_prior": "mix:1,1"}}, "design.analysis_prior", "three numbers"),
        ({"design": {"analysis_prior": "discounted"}}, "design.analysis_prior", "unknown prior 'discounted'"),
        ({"design": {"discount_ess": 2.0}}, "design.discount_ess", "must be > 2"),
        ({"design": {"discount_ess": 0.5}}, "design.discount_ess", "must be > 2"),
        ({"design": {"simulate_analysis": "nuts"}}, "design.simulate_analysis", "must be one of"),
    ],
)
def test_mistakes_name_the_key(doc, key, message):
    with pytest.raises(InputError) as err:
        config_from_dict(doc, source="my.yaml")
    assert err.value.key == key
    assert message in err.value.message
    assert str(err.value).startswith(f"my.yaml, key '{key}': ")


def test_n_max_message_reads_as_specified():
    with pytest.raises(InputError) as err:
        config_from_dict({"design": {"n_min": 50, "n_max": 30}})
    assert str(err.value).startswith("key 'design.n_max': must be >= design.n_min")


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "design:\n  n_max: 30\n  n_min: [1, 2\n")
    with pytest.raises(InputError) as err:
        load_config(path)
    assert err.value.file == str(path) and err.value.line is not None
    assert "not valid YAML" in err.value.message


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(InputError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("command", ["run", "report"])
def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys, command):
    path = write(tmp_path, yaml.safe_dump({"design": {"n_min": 50, "n_max": 30}}))
    out = tmp_path / "out"
    code = main([command, "--config", str(path), "--out", str(out), "--no-pdf", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "key 'design.n_max': must be >= design.n_min (50)" in err
    assert not out.exists()  # nothing was started


@pytest.mark.parametrize("design", [
    {"design_priors": ["phase12", "Discounted", "uniform", "jeffreys", "beta:11,3", "mix:0.5,11,3;0.5,1,1"]},
    {"analysis_prior": "beta:0.5,0.5"}, {"analysis_prior": " MIX:0.8,2,2; 0.2,1,1 "}, {"discount_ess": 2.5},
    {"simulate_analysis": "mcmc", "estimand": {"preset": "cpeptide_day365"}, "simulate": 10},
])
def test_readable_priors_and_settings_are_accepted_as_design_reads_them(design):
    from isletbayes.analyses.design import parse_prior

    config = config_from_dict({"design": design}).design
    for spec in [config.analysis_prior, *config.design_priors]:
        if spec.strip().lower() not in ("phase12", "discounted", "robust", "map_updated", "donor_like"):
            parse_prior(spec, "design.design_priors")  # what the configuration accepts, design reads


@pytest.mark.parametrize("spec", ["beta:1", "beta:0,1", "beta:1,2,3", "mix:0.5,1,1", "mix:1,1", "mix:x,1,1",
                                  "mix:-0.5,1,1;1.5,1,1", "beta:inf,1", "gamma:1,1", "mix:"])
def test_what_the_configuration_refuses_design_refuses_too(spec):
    from isletbayes.analyses.config import prior_spec_problem
    from isletbayes.analyses.design import parse_prior

    assert prior_spec_problem(spec) is not None
    with pytest.raises(InputError):
        parse_prior(spec, "design.analysis_prior")


@pytest.mark.parametrize("argv, option", [
    (["--design-prior", "bogus"], "--design-prior"), (["--analysis-prior", "beta:1"], "--analysis-prior"),
    (["--discount-ess", "1"], "--discount-ess"), (["--simulate-analysis", "nuts"], "--simulate-analysis"),
])
def test_cli_design_refuses_a_bad_prior_up_front_with_one_line(tmp_path, capsys, argv, option):
    out = tmp_path / "out"
    code = main(["design", *argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith(f"isletbayes: error: option {option}: "), err
    assert not out.exists()


def test_mass_matrix_choices_are_the_models_own():
    """The configuration spells the choices out (it must not import the models at start-up); they are the models'."""
    from typing import get_args

    from isletbayes.analyses.config import MassMatrix
    from isletbayes.models.sampling import MASS_MATRICES

    assert get_args(MassMatrix) == MASS_MATRICES
