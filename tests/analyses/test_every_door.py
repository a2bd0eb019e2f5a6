"""The same question gives the same numbers through every door.

`isletbayes binary --json`, `isletbayes cpeptide --json` and `isletbayes design --json` are asked the question the
shared small main job (tests/conftest.py, `isletbayes run --config fast.yaml`) answered, with the same seed and
settings given as options instead of a configuration file; their JSON must equal the matching sections of that
run's results.json to the last digit (the main job fits its MCMC sections in other processes and reads them back
from its cache, so this also holds the save/load round trip and the processes to the same numbers).
"""

from __future__ import annotations

import json

import pytest

from isletbayes.analyses.cli import main


def sampler_options(config) -> list[str]:
    s = config.sampler
    cores = [] if s.cores is None else ["--cores", str(s.cores)]
    return ["--draws", str(s.draws), "--tune", str(s.tune), "--chains", str(s.chains), *cores,
            "--seed", str(config.seed)]


@pytest.mark.parametrize("command", ["binary", "cpeptide", "design"])
def test_command_line_and_main_job_agree_to_the_last_digit(small_report, command, capsys, tmp_path):
    config = small_report.index.config
    args = {
        "binary": ["binary", *sampler_options(config)],
        "cpeptide": ["cpeptide", *sampler_options(config), "--no-sensitivity",
                     "--graft-function-draws", str(config.cpeptide.graft_function_draws)],
        # the design's MAP-updated and donor-like design priors are MCMC fits: same sampler settings
        "design": ["design", "--n-min", str(config.design.n_min), "--n-max", str(config.design.n_max),
                   "--n-step", str(config.design.n_step), *sampler_options(config)],
    }[command]
    if command == "design":  # its design-prior panel is kept in a fit cache: computed, then read back
        args += ["--cache-dir", str(tmp_path / "cache")]
    from_run = json.loads(small_report.index_path.read_text())["sections"][command]["summary"]
    for _ in range(2 if command == "design" else 1):
        capsys.readouterr()
        assert main([*args, "--json"]) == 0
        from_cli = json.loads(capsys.readouterr().out)
        assert from_cli == from_run
    if command == "design":
        assert len(list((tmp_path / "cache" / "design_prior_panel").iterdir())) == 1
