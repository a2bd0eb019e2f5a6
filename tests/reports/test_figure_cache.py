"""Rendered figures kept on disk: a kept figure is the figure that would be drawn, a change to its numbers draws it
again, a damaged entry is redrawn, a folder that cannot be written costs nothing but the reuse, and a report built
from kept figures is the report built by drawing them."""

from __future__ import annotations

import json
import re
import shutil
from functools import partial

import numpy as np
import pytest

from isletbayes.models.mixtures import BetaMixture
from isletbayes.reports import figures
from isletbayes.reports.figure_cache import FigureCache, figure_key
from isletbayes.reports.report import build_report


def bands(reverse: bool = False, shift: float = 0.0) -> partial:
    years = np.arange(1.0, 6.0)
    band = {"median": 0.5 - 0.05 * years + shift, "lower": 0.3 - 0.05 * years, "upper": 0.7 - 0.05 * years}
    curves = [("a", band), ("b", {k: v * 0.9 for k, v in band.items()})]
    return partial(figures.scenario_bands, years, dict(curves[::-1] if reverse else curves))


def test_a_kept_figure_is_the_figure_drawn(tmp_path):
    cache = FigureCache(tmp_path / "figures")
    drawn = cache.uri(bands())
    assert drawn == FigureCache(None).uri(bands()) and drawn.startswith("data:image/png;base64,")
    assert len(list((tmp_path / "figures").iterdir())) == 1
    assert cache.uri(bands()) == drawn


def test_the_key_follows_the_numbers_their_order_and_the_function():
    assert figure_key(bands()) == figure_key(bands())
    assert figure_key(bands(shift=1e-12)) != figure_key(bands())  # any number
    assert figure_key(bands(reverse=True)) != figure_key(bands())  # the same curves, drawn in another order
    years = np.arange(1.0, 6.0)
    assert figure_key(partial(figures.design_curves, years, {"x": years})) != figure_key(
        partial(figures.interval_plot, years, {"x": years}))
    one, other = BetaMixture.single(11, 3), BetaMixture.single(11, 4)
    assert figure_key(partial(figures.posterior_densities, [{"curves": {"u": one}}])) != figure_key(
        partial(figures.posterior_densities, [{"curves": {"u": other}}]))
    # keywords are named: the order they are given in draws nothing
    assert figure_key(partial(figures.forest_plot, [], [], title="t", xlabel="x")) == figure_key(
        partial(figures.forest_plot, [], [], xlabel="x", title="t"))
    with pytest.raises(TypeError, match="cannot key a figure on a object"):
        figure_key(partial(figures.forest_plot, object()))


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "not ascii"])
def test_a_damaged_entry_is_drawn_again_and_rewritten(tmp_path, damage):
    cache = FigureCache(tmp_path)
    drawn = cache.uri(bands())
    entry = next(tmp_path.iterdir())
    raw = bytearray(entry.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x01
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "empty":
        raw = bytearray()
    else:
        raw[-5:] = "é".encode() * 2 + b"!"
    entry.write_bytes(bytes(raw))
    assert cache.uri(bands()) == drawn
    assert entry.read_text().split("\n", 1)[1] == drawn


def test_a_folder_that_cannot_be_written_costs_only_the_reuse(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert FigureCache(blocker / "figures").uri(bands()) == FigureCache(None).uri(bands())


def test_a_report_from_kept_figures_is_the_report_drawn(small_report, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(small_report.out, out)
    uris = lambda html: re.findall(r'src="(data:[^"]+)"', html)  # noqa: E731
    drawn = uris(build_report(out, pdf=False).html.read_text())
    assert uris(build_report(out, pdf=False, figure_cache=tmp_path / "figures").html.read_text()) == drawn
    assert len(list((tmp_path / "figures").iterdir())) == len(set(drawn)) > 5

    def no_drawing(fig):
        raise AssertionError("a kept figure was drawn again")

    monkeypatch.setattr(figures, "to_data_uri", no_drawing)
    assert uris(build_report(out, pdf=False, figure_cache=tmp_path / "figures").html.read_text()) == drawn


def test_a_warm_main_job_imports_no_mcmc_or_plotting_package(small_report, tmp_path, fresh_command):
    """Every section from the fit cache and every figure kept: the job reads results and draws nothing, so it
    imports neither PyMC, nor ArviZ, nor xarray (a second of start-up on 2 cores), nor matplotlib (0.7 s more), nor
    scipy's stats, special and optimize (about 1 s: the robust MAP prior's interval is kept with its fit)."""
    run = fresh_command(["run", "--config", str(small_report.config_file), "--out", str(tmp_path / "out"),
                         "--cache-dir", str(small_report.out.parent / "cache"), "--no-pdf", "--quiet"])
    assert run.exit_code == 0
    assert run.loaded(*run.MCMC_PACKAGES, "matplotlib", "scipy.stats", "scipy.special", "scipy.optimize") == []
    index = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(s["cache"]["status"] == "hit" for s in index["sections"].values() if s.get("cache")), index
