"""The report's figures, drawn with matplotlib's Agg backend from plain arrays and tables, or by arviz-plots from
a fit's ArviZ DataTree.

Each function takes numbers or a DataTree (not analysis objects) and returns a matplotlib Figure;
:func:`to_data_uri` turns a figure into an embedded PNG (``data:image/png;base64,...``) so the report is one
self-contained file. The report builder (:mod:`isletbayes.reports.report`) extracts the numbers from the analyses'
results.

Standard Bayesian-workflow figures are arviz-plots' own, drawn from the fit's groups
(:func:`isletbayes.models.sampling.fit` with ``groups=``): :func:`prior_posterior` (``plot_prior_posterior``:
prior and posterior marginals), :func:`posterior_predictive_check` (``plot_ppc_rootogram`` for counts,
``plot_ppc_dist`` otherwise) and :func:`power_scaling` (``plot_psense_dist``: the posterior when the prior or
the likelihood is raised to a power near 1). A caption of a figure drawn from a ``prior`` or
``prior_predictive`` group must say that its content comes from the prior.

Hand-written here, because arviz-plots draws from MCMC draws and these figures show something else: exact
densities of beta mixtures (:func:`posterior_densities`: a kernel density of draws would blur an exact curve),
comparator studies' raw counts with Jeffreys intervals beside summary diamonds (:func:`forest_plot`), posterior
bands over time or over C-peptide summarised by the analysis (:func:`cpeptide_trajectory`, :func:`graft_link`),
exact credible intervals (:func:`interval_plot`), exact operating characteristics over n
(:func:`design_curves`) and scenario bands over years (:func:`scenario_bands`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np

# One palette for the whole report (colour-blind safe, Okabe-Ito), prior panel members keep their colour.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
DPI = 110
STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "isletbayes",
}


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display; rendering deterministic across machines) with the
    report's :data:`STYLE`. Imported by the first drawing, not by this module: a report whose figures all come from
    the figure cache (reports/figure_cache.py) imports no matplotlib, about 0.7 s of a warm main job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def to_data_uri(fig) -> str:
    """PNG of ``fig`` as a data URI; closes the figure."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def exact_interval(r: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Jeffreys interval for r of n (equal-tailed quantiles of Beta(r + 1/2, n - r + 1/2))."""
    from scipy import stats

    a = (1 - level) / 2
    lo = 0.0 if r == 0 else float(stats.beta.ppf(a, r + 0.5, n - r + 0.5))
    hi = 1.0 if r == n else float(stats.beta.ppf(1 - a, r + 0.5, n - r + 0.5))
    return lo, hi


def forest_plot(
    studies: Sequence[Mapping],
    summaries: Sequence[Mapping],
    title: str = "",
    xlabel: str = "rate",
):
    """Comparator studies (r/n with Jeffreys 95% intervals) above pooled/predictive summaries (diamonds).

    ``studies``: dicts with ``label, r, n`` and optional ``group``, ``used`` (False = shown, not pooled).
    ``summaries``: dicts with ``label, mean, lo, hi`` and optional ``colour``.
    """
    plt = pyplot()
    rows = len(studies) + len(summaries)
    fig, ax = plt.subplots(figsize=(7.2, 0.9 + 0.32 * rows))
    groups = sorted({s.get("group", "") for s in studies})
    colour_of = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    y = rows
    ticks, labels = [], []
    for s in studies:
        y -= 1
        r, n = int(s["r"]), int(s["n"])
        lo, hi = exact_interval(r, n)
        c = colour_of[s.get("group", "")]
        used = s.get("used", True)
        ax.plot([lo, hi], [y, y], color=c, lw=1.4, alpha=1.0 if used else 0.45)
        ax.plot(r / n, y, "s", color=c, ms=3 + 6 * np.sqrt(n / max(int(t["n"]) for t in studies)),
                mfc=c if used else "white", alpha=1.0 if used else 0.6)
        ticks.append(y)
        labels.append(f"{s['label']}  {r}/{n}" + ("" if used else "  (not pooled)"))
    if summaries:
        ax.axhline(y - 0.5, color="0.7", lw=0.6)
    for i, s in enumerate(summaries):
        y -= 1
        c = s.get("colour", PALETTE[(i + 3) % len(PALETTE)])
        m, lo, hi = float(s["mean"]), float(s["lo"]), float(s["hi"])
        ax.fill([lo, m, hi, m], [y, y + 0.28, y, y - 0.28], color=c, alpha=0.85)
        ticks.append(y)
        labels.append(s["label"])
    ax.set_yticks(ticks, labels)
    ax.set_xlim(0, 1)
    ax.set_ylim(y - 0.8, rows - 0.2)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, loc="left")
    for g, c in colour_of.items():
        if g:
            ax.plot([], [], "s", color=c, label=g.replace("_", " "))
    if any(g for g in groups):
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    ax.grid(axis="x", color="0.92")
    fig.tight_layout()
    return fig


def posterior_densities(panels: Sequence[Mapping], grid_points: int = 501):
    """One panel per endpoint: the posterior density of its rate under each prior of the panel.

    ``panels``: dicts with ``title``, ``r``, ``n``, optional ``p0`` (vertical line) and ``curves``: a mapping
    from prior label to an object with ``.pdf(x)`` (a beta mixture). Observed r/n is marked on the axis.
    """
    plt = pyplot()
    k = len(panels)
    cols = min(k, 2)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(7.2, 2.5 * rows), squeeze=False)
    x = np.linspace(0.0005, 0.9995, grid_points)
    labels_seen: dict[str, object] = {}
    interior = x <= 0.985
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        top = 0.0
        for i, (label, dist) in enumerate(panel["curves"].items()):
            dens = np.asarray(dist.pdf(x), dtype=float)
            line, = ax.plot(x, dens, color=PALETTE[i % len(PALETTE)], lw=1.3, label=label)
            labels_seen.setdefault(label, line)
            top = max(top, float(np.nanmax(dens[interior])))
        # a density with an infinite spike at 0 or 1 (r = 0 or r = n under Jeffreys) would flatten the rest
        ax.set_ylim(0, 1.25 * top if top > 0 else None)
        if panel.get("p0") is not None:
            ax.axvline(panel["p0"], color="0.4", ls="--", lw=0.8)
        ax.plot(panel["r"] / panel["n"], 0, marker="^", color="k", ms=7, clip_on=False, zorder=5)
        ax.set_title(f"{panel['title']}  ({panel['r']}/{panel['n']})", loc="left")
        ax.set_xlim(0, 1)
        ax.set_yticks([])
        ax.set_xlabel("rate")
    for ax in axes.ravel()[k:]:
        ax.set_visible(False)
    fig.legend(list(labels_seen.values()), list(labels_seen.keys()), loc="lower center",
               ncol=min(len(labels_seen), 6), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.06 if rows == 1 else 0.04, 1, 1))
    return fig


def cpeptide_trajectory(
    days: np.ndarray,
    band: Mapping[str, np.ndarray],
    observed_days: np.ndarray,
    observed_means: np.ndarray,
    lod: float | None = None,
    new_participant: Mapping[str, np.ndarray] | None = None,
    ylabel: str = "C-peptide (pmol/L)",
    band_label: str = "cohort mean, 95% credible band",
    new_label: str = "new participant, 90% predictive band",
    observed_label: str = "published cohort mean",
):
    """Posterior cohort-mean trajectory (median, inner and outer credible bands) against the published means.

    ``band``: ``median``, ``lo``, ``hi`` (and optional ``lo50``, ``hi50``) arrays over ``days``.
    ``new_participant``: optional ``lo``, ``hi`` of the predictive range for a new participant.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    if new_participant is not None:
        ax.fill_between(days, new_participant["lo"], new_participant["hi"], color=PALETTE[5], alpha=0.18,
                        lw=0, label=new_label)
    ax.fill_between(days, band["lo"], band["hi"], color=PALETTE[0], alpha=0.25, lw=0, label=band_label)
    if "lo50" in band and "hi50" in band:
        ax.fill_between(days, band["lo50"], band["hi50"], color=PALETTE[0], alpha=0.35, lw=0,
                        label="cohort mean, 50% credible band")
    ax.plot(days, band["median"], color=PALETTE[0], lw=1.6, label="cohort mean, posterior median")
    ax.plot(observed_days, observed_means, "o", color=PALETTE[3], ms=6, zorder=5, label=observed_label)
    if lod is not None:
        ax.axhline(lod, color="0.5", ls=":", lw=0.9)
        ax.annotate(f"detection limit {lod:g}", (days[-1], lod), xytext=(0, 3), textcoords="offset points",
                    ha="right", fontsize=7, color="0.4")
    ax.set_xlabel("days after infusion")
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1.04 * float(max(np.max(days), np.max(observed_days))))
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.grid(color="0.93")
    fig.tight_layout()
    return fig


def graft_link(
    cpeptide: np.ndarray,
    prob: Mapping[str, np.ndarray],
    observed_rate: float | None = None,
    observed_label: str = "",
    cpeptide_marks: Mapping[str, float] | None = None,
):
    """P(insulin independence) as a function of day-365 C-peptide, with its credible band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    ax.fill_between(cpeptide, prob["lo"], prob["hi"], color=PALETTE[2], alpha=0.25, lw=0,
                    label="95% credible band")
    ax.plot(cpeptide, prob["median"], color=PALETTE[2], lw=1.6, label="posterior median")
    if observed_rate is not None:
        ax.axhline(observed_rate, color=PALETTE[3], ls="--", lw=0.9, label=observed_label or "observed rate")
    for label, value in (cpeptide_marks or {}).items():
        ax.axvline(value, color="0.5", ls=":", lw=0.9)
        ax.annotate(label, (value, 0.97), xytext=(3, 0), textcoords="offset points", fontsize=7, color="0.35",
                    va="top")
    ax.set_xscale("log")
    ax.set_xlabel("day-365 C-peptide (pmol/L, log scale)")
    ax.set_ylabel("P(insulin independent)")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=7, frameon=True, framealpha=0.9, edgecolor="none")
    ax.grid(color="0.93")
    fig.tight_layout()
    return fig


def interval_plot(rows: Sequence[Mapping], xlabel: str = "rate", threshold: float | None = None,
                  threshold_label: str = ""):
    """Horizontal credible intervals: ``rows`` of ``label, mean, lo, hi`` and optional ``r``, ``n``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 0.8 + 0.42 * len(rows)))
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        ax.plot([row["lo"], row["hi"]], [y, y], color=PALETTE[0], lw=2)
        ax.plot(row["mean"], y, "o", color=PALETTE[0])
        if "r" in row and "n" in row:
            ax.plot(row["r"] / row["n"], y, "x", color=PALETTE[3], ms=7)
    ax.set_yticks(range(len(rows) - 1, -1, -1), [r["label"] for r in rows])
    if threshold is not None:
        ax.axvline(threshold, color="0.4", ls="--", lw=0.8)
        if threshold_label:
            ax.annotate(threshold_label, (threshold, len(rows) - 0.55), xytext=(3, 0), textcoords="offset points",
                        fontsize=7, color="0.35")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="0.93")
    fig.tight_layout()
    return fig


def design_curves(
    n: np.ndarray,
    curves: Mapping[str, np.ndarray],
    targets: Mapping[str, float] | None = None,
    title: str = "",
    ylabel: str = "probability",
    marks: Mapping[str, int] | None = None,
    ylim: tuple[float, float] | None = (0.0, 1.02),
):
    """Operating characteristics or assurance over sample size, drawn as steps (the sawtooth of discrete
    designs is shown, not smoothed). ``targets``: horizontal reference lines; ``marks``: vertical lines at n;
    ``ylim``: None = fitted to the curves and targets (a type I error on its own scale)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 3.0))
    for i, (label, values) in enumerate(curves.items()):
        ax.step(n, values, where="mid", color=PALETTE[i % len(PALETTE)], lw=1.3, label=label)
    for label, value in (targets or {}).items():
        ax.axhline(value, color="0.45", ls="--", lw=0.8)
        ax.annotate(label, (n[0], value), xytext=(2, 2), textcoords="offset points", fontsize=7, color="0.35")
    for label, value in (marks or {}).items():
        ax.axvline(value, color="0.6", ls=":", lw=0.9)
        ax.annotate(label, (value, 0.02), xytext=(3, 0), textcoords="offset points", fontsize=7, color="0.35")
    ax.set_xlabel("phase 3 sample size n")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    else:
        top = max([float(np.max(v)) for v in curves.values()] + list((targets or {}).values()))
        ax.set_ylim(0, 1.15 * top)
    if title:
        ax.set_title(title, loc="left")
    ax.legend(loc="center right", fontsize=7, frameon=False)
    ax.grid(color="0.93")
    fig.tight_layout()
    return fig


def scenario_bands(years: np.ndarray, scenarios: Mapping[str, Mapping[str, Sequence[float]]],
                   ylabel: str = "share insulin independent"):
    """One line (median) and band (95% interval) per scenario over follow-up years."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    for i, (label, sc) in enumerate(scenarios.items()):
        c = PALETTE[i % len(PALETTE)]
        ax.fill_between(years, sc["lower"], sc["upper"], color=c, alpha=0.12, lw=0)
        ax.plot(years, sc["median"], "o-", color=c, lw=1.4, ms=4, label=label)
    ax.set_xticks(years)
    ax.set_xlabel("years after infusion")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    ax.grid(color="0.93")
    fig.tight_layout()
    return fig


def tipping_point(ess: np.ndarray, probability: np.ndarray, threshold: float, tipping_ess: float | None,
                  benchmark_label: str, map_ess: Mapping[str, float] | None = None):
    """P(rate > benchmark) against the ESS of a beta prior centred on the benchmark (borrowing), with the decision
    threshold, the ESS at which the conclusion tips, and the ESS the MAP priors actually borrow."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 3.0))
    ax.plot(ess, probability, color=PALETTE[0], lw=1.5, label=f"P(rate > {benchmark_label})")
    ax.axhline(threshold, color="0.45", ls="--", lw=0.8)
    ax.annotate(f"decision threshold {threshold:g}", (ess[0], threshold), xytext=(2, 2), textcoords="offset points",
                fontsize=7, color="0.35")
    if tipping_ess is not None and tipping_ess > 0:
        ax.axvline(tipping_ess, color=PALETTE[3], ls=":", lw=1.0)
        ax.annotate(f"tips at ESS {tipping_ess:.0f}", (tipping_ess, 0.02), xytext=(3, 0), textcoords="offset points",
                    fontsize=7, color=PALETTE[3])
    for i, (label, value) in enumerate((map_ess or {}).items()):
        ax.axvline(value, color="0.6", ls="-.", lw=0.7)
        ax.annotate(label, (value, 0.12 + 0.08 * i), xytext=(3, 0), textcoords="offset points", fontsize=6.5,
                    color="0.35")
    ax.set_xlabel("prior effective sample size borrowed at the benchmark (participants)")
    ax.set_ylabel("posterior probability")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    ax.grid(color="0.93")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------------------
# arviz-plots: the standard figures of a fit (its DataTree with prior / predictive / log-density groups)
# --------------------------------------------------------------------------------------------------------------
def _arviz_figure(plot_collection):
    """The matplotlib Figure of an arviz-plots PlotCollection, laid out like the report's other figures."""
    fig = plot_collection.viz["figure"].item()
    fig.set_dpi(DPI)
    return fig


def _labeller(labels: Mapping[str, str] | None):
    from arviz_base.labels import MapLabeller

    return MapLabeller(var_name_map=dict(labels or {}))


def _check_groups(idata, *groups: str) -> None:
    missing = [g for g in groups if g not in idata.children]
    if missing:
        raise ValueError(f"the fit has no {', '.join(missing)} group(s): fit it with "
                         f"isletbayes.models.sampling.fit(..., groups={tuple(missing)!r})")


def prior_posterior(idata, var_names: Sequence[str], labels: Mapping[str, str] | None = None, height: float = 2.4):
    """Prior and posterior marginal density of each of ``var_names`` (arviz-plots' ``plot_prior_posterior``).

    ``idata`` needs the ``prior`` and ``posterior`` groups; ``labels`` maps variable names to titles. The prior
    curves are draws from the prior: a caption must say so.
    """
    import arviz_plots as azp

    _check_groups(idata, "prior", "posterior")
    pc = azp.plot_prior_posterior(idata, var_names=list(var_names), backend="matplotlib",
                                  labeller=_labeller(labels), figure_kwargs={"figsize": (7.2, height)})
    return _arviz_figure(pc)


def posterior_predictive_check(idata, var_names: Sequence[str] | None = None, discrete: bool = False,
                               labels: Mapping[str, str] | None = None, height: float = 2.6):
    """Observed data against posterior predictive draws (arviz-plots): a rootogram for counts (``discrete``,
    ``plot_ppc_rootogram``), else the predictive densities of ``plot_ppc_dist``.

    ``idata`` needs the ``posterior_predictive`` and ``observed_data`` groups.
    """
    import arviz_plots as azp

    _check_groups(idata, "posterior_predictive", "observed_data")
    plot = azp.plot_ppc_rootogram if discrete else azp.plot_ppc_dist
    pc = plot(idata, var_names=None if var_names is None else list(var_names), backend="matplotlib",
              labeller=_labeller(labels), figure_kwargs={"figsize": (7.2, height)})
    return _arviz_figure(pc)


def power_scaling(idata, var_names: Sequence[str], labels: Mapping[str, str] | None = None,
                  row_height: float = 1.9):
    """The posterior of each of ``var_names`` when the prior (left) or the likelihood (right) is power-scaled by
    0.8, 1 and 1.25 (arviz-plots' ``plot_psense_dist``; Kallioinen et al. 2024, Stat Comput 34:57).

    ``idata`` needs the ``posterior``, ``log_prior`` and ``log_likelihood`` groups. Curves that move with the
    prior's power mark a posterior that rests on its prior.
    """
    import arviz_plots as azp

    _check_groups(idata, "posterior", "log_prior", "log_likelihood")
    names = list(var_names)
    pc = azp.plot_psense_dist(idata, var_names=names, backend="matplotlib", labeller=_labeller(labels),
                              figure_kwargs={"figsize": (7.2, 0.6 + row_height * len(names))})
    fig = _arviz_figure(pc)
    fig.tight_layout()
    return fig
