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
        ({"design": {"gamma": 1.5}}, "design.gamma", "less than 1"),
        ({"design": {"interim": [0.5, 1.2]}}, "design.interim", "strictly between 0 and 1"),
        ({"sections": {"binary": "maybe"}}, "sections.binary", "boolean"),
        ({"seed": -3}, "seed", "greater than or equal to 0"),
        ({"seed": 2**32}, "seed", "less than 4294967296"),
        ({"priors": {"map": {"tau_prior": "gamma"}}}, "priors.map.tau_prior", "must be one of"),
        ({"design": {"endpoint": "cpeptide"}}, "design", "no exact answer"),
        ({"binary": {"thresholds": [0.5, "median"]}}, "binary.thresholds", "or 'comparator'"),
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
