"""The main job: the whole re-analysis on the bundled published data (or a user's data), then the report.

``isletbayes run`` runs, in order, each section switched on in the configuration:

1. **binary**: the binary end points under the prior panel, the meta-analytic-predictive (MAP) prior from the
   comparator studies, and the safety events (:mod:`isletbayes.analyses.binary`);
2. **cpeptide**: the C-peptide trajectory and the graft-function link to insulin independence
   (:mod:`isletbayes.analyses.cpeptide`);
3. **design**: the phase 3 planning summary, exact operating characteristics and assurance over n
   (:mod:`isletbayes.analyses.design`).

Each section's result is looked up in the fit cache (:mod:`isletbayes.analyses.cache`) by a hash of its data,
priors, settings and package versions, computed only on a miss, and saved under ``<out>/<section>/`` with the
analysis' own ``save()`` (netCDF draws, JSON summaries). ``<out>/results.json`` indexes them: the configuration
and its hash, data-file hashes, per-section status, cache outcome, time, summary and diagnostics, and the
numbers the report quotes. Then ``<out>/report.html`` (self-contained) and ``<out>/report.pdf`` are built.

A section whose module is not part of this installation is recorded as unavailable and left out of the
report, which says so. A fit failing its convergence checks is printed in red with FAILED and flagged in
results.json and the report; the run still completes so the failure can be inspected.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from isletbayes.analyses.cache import MANIFEST, CacheEvent, FitCache, default_cache_dir, fit_key, key_material
from isletbayes.analyses.config import MainJobConfig, config_to_dict, load_config
from isletbayes.analyses.provenance import provenance, sha256_of
from isletbayes.data.errors import InputError
from isletbayes.data.io import write_json_atomic

DEFAULT_OUT = Path("reports/out")
RESULTS_INDEX = "results.json"
RESULTS_FORMAT = "isletbayes-results/1"

SECTIONS: dict[str, tuple[str, str]] = {
    # name: (module, title)
    "binary": ("isletbayes.analyses.binary", "Binary end points, prior panel, MAP prior and safety"),
    "cpeptide": ("isletbayes.analyses.cpeptide", "C-peptide trajectory and graft function"),
    "design": ("isletbayes.analyses.design", "Phase 3 planning"),
    "durability": ("isletbayes.analyses.durability", "Durability scenarios"),
}


# --- results ----------------------------------------------------------------------------------------------


@dataclass
class SectionRun:
    """One section of the main job: what ran, whether it came from the cache, where it was saved."""

    name: str
    title: str
    status: str  # 'ok' | 'skipped' (switched off) | 'unavailable' (module not installed)
    reason: str = ""
    result: Any = None
    cache: CacheEvent | None = None
    seconds: float = 0.0
    directory: str | None = None  # relative to the output folder
    files: list[str] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)

    def index_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"title": self.title, "status": self.status, "reason": self.reason,
                                 "seconds": round(self.seconds, 3), "dir": self.directory, "files": self.files,
                                 "cache": self.cache.as_dict() if self.cache else None,
                                 "diagnostics": self.diagnostics}
        if self.result is not None:
            entry["summary"] = self.result.to_dict()
        return entry


@dataclass
class MainJobResult:
    out: Path
    index_path: Path
    config: MainJobConfig
    sections: dict[str, SectionRun]
    seconds: float
    html: Path | None = None
    pdf: Path | None = None
    pdf_engine: str | None = None
    pdf_error: str | None = None

    @property
    def diagnostics(self) -> list[dict]:
        return [d for s in self.sections.values() for d in s.diagnostics]

    @property
    def diagnostics_ok(self) -> bool:
        return all(d.get("ok", False) for d in self.diagnostics)


# --- inputs -----------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """The validated data every section draws on, with the hash of each file it came from."""

    counts: Any
    cpeptide_means: Any
    comparators: Any
    participant: Any | None
    files: dict[str, dict[str, str]]


def load_inputs(config: MainJobConfig, participant_data: Path | None = None) -> Inputs:
    from isletbayes import data as d

    files: dict[str, dict[str, str]] = {}

    def record(name: str, frame, given: Path | None) -> None:
        source = Path(frame.attrs.get("source_file", given or ""))
        files[name] = {"path": str(given) if given else f"bundled ({source.name})",
                       "sha256": sha256_of(source) if source.is_file() else ""}

    cfg = config.data
    counts = d.load_counts(cfg.counts, include_unverified=cfg.include_unverified)
    record("counts", counts, cfg.counts)
    means = d.load_cpeptide_means(cfg.cpeptide_means, include_unverified=cfg.include_unverified)
    record("cpeptide_means", means, cfg.cpeptide_means)
    comparators = d.load_comparators(cfg.comparators, include_unverified=cfg.include_unverified)
    record("comparators", comparators, cfg.comparators)
    sources = d.load_sources()
    record("sources", sources, None)
    participant = None
    path = participant_data or cfg.participant_data
    if path is not None:
        participant = d.load_participant_data(path)
        record("participant_data", participant, Path(path))
    return Inputs(counts, means, comparators, participant, files)


# --- sections ---------------------------------------------------------------------------------------------


@dataclass
class SectionPlan:
    """How to compute one section: the material its cache key hashes, and the calls to compute/save/load."""

    material: dict[str, Any]
    compute: Callable[[], Any]
    save: Callable[[Any, Path], Any]
    load: Callable[[Path], Any]


def _sampler_settings(config: MainJobConfig):
    from isletbayes.models.sampling import SamplerSettings

    s = config.sampler
    return SamplerSettings(draws=s.draws, tune=s.tune, chains=s.chains, cores=s.cores,
                           target_accept=s.target_accept, nuts_sampler=s.nuts_sampler, seed=config.seed)


def _default_rows(frame):
    return frame[frame["used_by_default"]] if "used_by_default" in frame.columns else frame


def _count(inputs: Inputs, endpoint: str) -> tuple[int, int]:
    """(r, n) of an end point: from participant-level data when given, else the default published row."""
    if inputs.participant is not None and endpoint == "insulin_independence":
        p = inputs.participant
        rows = p[(p["measure"] == "insulin_independent") & (p["day"] == 365)]
        if len(rows):
            return int((rows["value"] > 0.5).sum()), int(rows["participant"].nunique())
    counts = _default_rows(inputs.counts)
    rows = counts[counts["endpoint"] == endpoint]
    if len(rows) != 1:
        raise InputError(f"the counts file has {len(rows)} default rows for end point '{endpoint}' (need 1)",
                         key="data.counts")
    row = rows.iloc[0]
    return int(row["r"]), int(row["n"])


def _plan_design(module, config: MainJobConfig, inputs: Inputs, done: dict[str, SectionRun]) -> SectionPlan:
    cfg = config.design.model_dump()
    phase12 = _count(inputs, cfg["endpoint"])
    priors = {k: cfg.pop(k) for k in ("design_prior", "discount_ess", "design_robust", "analysis_prior")}
    material = key_material("design", module=module.__name__, data={"phase12": phase12}, priors=priors,
                            settings={**cfg, "seed": config.seed})

    def compute():
        return module.run_design(**cfg, **priors, seed=config.seed, out=None, phase12=phase12)

    return SectionPlan(material, compute, lambda r, d: r.save(d), module.DesignResult.load)


def _plan_binary(module, config: MainJobConfig, inputs: Inputs, done: dict[str, SectionRun]) -> SectionPlan:
    binary_on = config.sections.binary
    mp = config.priors.map
    kwargs = {
        # with only the safety section on, one cheap end point under one exact prior carries it
        "endpoints": list(config.binary.endpoints) if binary_on else ["insulin_independence"],
        "priors": list(config.priors.panel) if binary_on else ["uniform"],
        "thresholds": list(config.binary.thresholds),
        "comparators": None if mp.studies == "default" else list(mp.studies),
        "tau_prior": mp.tau_prior, "tau_scale": mp.tau_scale, "mu_prior_sd": mp.mu_prior_sd,
        "robust_weight": mp.robust_weight, "predictive_m": config.binary.predictive_m,
        "settings": _sampler_settings(config), "include_safety": config.sections.safety,
        "counts_path": config.data.counts, "comparators_path": config.data.comparators,
    }
    material = key_material("binary", module=module.__name__,
                            data={"counts": inputs.counts, "comparators": inputs.comparators},
                            priors={k: kwargs[k] for k in ("priors", "comparators", "tau_prior", "tau_scale",
                                                           "mu_prior_sd", "robust_weight")},
                            settings={k: v for k, v in kwargs.items() if k not in ("counts_path", "comparators_path")})
    return SectionPlan(material, lambda: module.run_binary(**kwargs), lambda r, d: r.save(d),
                       module.BinaryResult.load)


def _plan_cpeptide(module, config: MainJobConfig, inputs: Inputs, done: dict[str, SectionRun]) -> SectionPlan:
    from dataclasses import replace

    from isletbayes.models.cpeptide_trajectory import TrajectoryPriors
    from isletbayes.models.graft_link import LinkPriors

    cfg = config.cpeptide
    if config.data.cpeptide_means is not None and inputs.participant is None:
        raise InputError("the C-peptide analysis fits the bundled cohort means or participant-level data "
                         "(data.participant_data or --data); another means file is not supported",
                         key="data.cpeptide_means")
    settings = _sampler_settings(config)
    if cfg.target_accept is not None:
        settings = replace(settings, target_accept=cfg.target_accept)
    priors = TrajectoryPriors(**cfg.priors.model_dump())
    link_priors = LinkPriors(**cfg.link_priors.model_dump()) if cfg.link else None
    participant_path = inputs.files.get("participant_data", {}).get("path")
    data = ({"participant": inputs.participant} if participant_path else
            {"cpeptide_means": _default_rows(inputs.cpeptide_means),
             "insulin_independence": _count(inputs, "insulin_independence")})
    options = {"late_decline": cfg.late_decline, "rise_shape": cfg.rise_shape, "sensitivity": cfg.sensitivity,
               "psense": cfg.psense}
    material = key_material("cpeptide", module=module.__name__, data=data,
                            priors={"trajectory": priors, "link": link_priors},
                            settings={"sampler": settings, **options})

    def compute():
        return module.run_cpeptide(participant_path, priors=priors, link_priors=link_priors, settings=settings,
                                   **options)

    return SectionPlan(material, compute, lambda r, d: r.save(d), module.CpeptideResult.load)


def _plan_durability(module, config: MainJobConfig, inputs: Inputs, done: dict[str, SectionRun]) -> SectionPlan:
    from isletbayes import data as d

    r, n = _count(inputs, "insulin_independence")
    durability = d.load_durability(include_unverified=config.data.include_unverified)
    settings = {"n_draws": config.durability.n_draws, "seed": config.seed}
    material = key_material("durability", module=module.__name__,
                            data={"phase12": (r, n), "durability": durability},
                            priors={"panel_prior": (1.0, 1.0)}, settings=settings)

    def compute():
        return module.run_durability(r=r, n=n, panel_prior=(1.0, 1.0), durability=durability, **settings)

    return SectionPlan(material, compute, lambda res, dd: res.save(dd), module.DurabilityResult.load)


PLANNERS: dict[str, Callable[..., SectionPlan]] = {
    "binary": _plan_binary,
    "cpeptide": _plan_cpeptide,
    "design": _plan_design,
    "durability": _plan_durability,
}


def find_diagnostics(obj: Any, path: str = "") -> list[dict]:
    """Every diagnostics block (a dict with R-hat and failures, as Diagnostics.as_dict() writes) in a summary,
    named by where it sits (list items by their 'label' or 'name' where they have one)."""
    found: list[dict] = []
    if isinstance(obj, dict):
        if "max_rhat" in obj and "failures" in obj:
            name = path.removesuffix(".diagnostics") if path.endswith(".diagnostics") else path
            found.append({"fit": name or "fit", **obj})
            return found
        for key, value in obj.items():
            if key == "provenance":
                continue
            found.extend(find_diagnostics(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            label = (value.get("label") or value.get("name")) if isinstance(value, dict) else None
            found.extend(find_diagnostics(value, f"{path}[{label if label else i}]"))
    return found


def unique_fits(diagnostics: list[dict]) -> list[dict]:
    """One row per distinct fit: an analysis that reuses a fit (e.g. the main fit as one arm of a sensitivity
    analysis) reports the same diagnostics twice; the copies are listed under 'also' instead."""
    rows: dict[tuple, dict] = {}
    for d in diagnostics:
        sig = tuple(d.get(k) for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "min_ebfmi",
                                       "n_chains", "n_draws"))
        if sig in rows:
            rows[sig].setdefault("also", []).append(d["fit"])
        else:
            rows[sig] = dict(d)
    return list(rows.values())


def _replace_dir(final: Path, write: Callable[[Path], Any]) -> list[str]:
    """Write a section's files into a temporary folder, then swap it in for the old one (never half-written)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        if final.exists():
            trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return files


# --- the job ----------------------------------------------------------------------------------------------


class Progress:
    """Status lines on stderr (rich), silent when quiet."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)

    def status(self, message: str):
        from contextlib import nullcontext

        return nullcontext() if self.quiet else self.console.status(message, spinner="dots")

    def line(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def failure(self, message: str) -> None:
        # failures are printed even when quiet: they must never pass silently
        from rich.markup import escape

        self.console.print(f"[bold red]FAILED[/bold red] {escape(message)}")


# Sections that fit MCMC models: when several must be computed they run in separate processes (each seeded,
# so the numbers do not depend on how many run at once).
HEAVY_SECTIONS = ("binary", "cpeptide")


def _wanted(config: MainJobConfig, name: str) -> bool:
    return bool(getattr(config.sections, name) or (name == "binary" and config.sections.safety))


def _quiet_pymc() -> None:
    """PyMC logs each sampler start at INFO; the main job prints its own progress lines instead."""
    import logging

    for name in ("pymc", "pymc.sampling", "pymc.stats.convergence"):
        logging.getLogger(name).setLevel(logging.WARNING)


def compute_section(name: str, config_doc: dict, participant_data: str | None, cache_root: str | None,
                    scratch: str) -> tuple[str, float]:
    """Compute one section from scratch (in a worker process or in-line) and save it: into the cache when
    ``cache_root`` is given, else into ``scratch``. Returns the folder and the seconds it took."""
    _quiet_pymc()
    config = MainJobConfig.model_validate(config_doc)
    inputs = load_inputs(config, Path(participant_data) if participant_data else None)
    plan = PLANNERS[name](importlib.import_module(SECTIONS[name][0]), config, inputs, {})
    started = time.perf_counter()
    result = plan.compute()
    seconds = time.perf_counter() - started
    if cache_root is not None:
        cache = FitCache(Path(cache_root))
        folder = cache.store(name, fit_key(plan.material), plan.material, lambda d: plan.save(result, d))
    else:
        folder = Path(scratch) / name
        folder.mkdir(parents=True)
        plan.save(result, folder)
    return str(folder), seconds


def _copy_entry(src: Path, dest: Path) -> list[str]:
    """Copy a saved section (a cache entry or a scratch folder) to the output folder, manifest left out."""
    def write(tmp: Path) -> None:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src)
            if rel.as_posix() == MANIFEST:
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, tmp / rel)

    return _replace_dir(dest, write)


def run_analyses(
    config: MainJobConfig,
    out: Path,
    *,
    cache: FitCache,
    participant_data: Path | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> tuple[dict[str, SectionRun], Inputs]:
    """Run every section switched on, through the cache; save each under ``out/<section>/``.

    Cached sections are loaded; the others are computed, the MCMC ones in up to ``jobs`` worker processes at
    once (default: as many as there are CPU cores, at most the number of such sections)."""
    import tempfile
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from rich.markup import escape

    progress = progress or Progress(quiet=True)
    _quiet_pymc()
    with progress.status("loading and validating the data"):
        inputs = load_inputs(config, participant_data)
    runs: dict[str, SectionRun] = {}
    plans: dict[str, SectionPlan] = {}
    events: dict[str, CacheEvent] = {}
    for name, (module_name, title) in SECTIONS.items():
        if not _wanted(config, name):
            runs[name] = SectionRun(name, title, "skipped", "switched off in the configuration (sections)")
            progress.line(f"[dim]- {name}: skipped (sections.{name} is false)[/dim]")
            continue
        if importlib.util.find_spec(module_name) is None or name not in PLANNERS:
            runs[name] = SectionRun(name, title, "unavailable",
                                    f"the {name} analysis ({module_name}) is not part of this installation")
            progress.line(f"[yellow]- {name}: unavailable ({module_name} not installed)[/yellow]")
            continue
        plan = PLANNERS[name](importlib.import_module(module_name), config, inputs, runs)
        plans[name] = plan
        key = fit_key(plan.material)
        if not cache.enabled:
            events[name] = CacheEvent(name, key, "disabled")
            continue
        started = time.perf_counter()
        result, corruption = cache.fetch(name, key, plan.load)
        if result is None:
            events[name] = CacheEvent(name, key, "refit" if corruption else "miss", corruption)
            continue
        events[name] = CacheEvent(name, key, "hit")
        runs[name] = SectionRun(name, title, "ok", result=result, cache=events[name],
                                seconds=time.perf_counter() - started)

    to_compute = [n for n in plans if n not in runs]
    heavy = [n for n in to_compute if n in HEAVY_SECTIONS]
    n_jobs = max(1, min(jobs or (os.cpu_count() or 1), len(heavy)))
    config_doc = config.model_dump(mode="json")
    cache_root = str(cache.root) if cache.enabled else None
    with tempfile.TemporaryDirectory(prefix="isletbayes-scratch-") as scratch:
        folders: dict[str, tuple[str, float]] = {}
        args = lambda n: (n, config_doc, str(participant_data) if participant_data else None,  # noqa: E731
                          cache_root, scratch)
        if n_jobs > 1:
            with progress.status(f"fitting {', '.join(heavy)} ({n_jobs} processes)"), \
                    ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(compute_section, *args(n)): n for n in heavy}
                for future in as_completed(futures):
                    folders[futures[future]] = future.result()
                    progress.line(f"[green]\u2713[/green] {futures[future]}: computed in "
                                  f"{folders[futures[future]][1]:.1f} s")
        for name in to_compute:
            if name not in folders:
                with progress.status(f"{name}: {SECTIONS[name][1].lower()}"):
                    folders[name] = compute_section(*args(name))
                progress.line(f"[green]\u2713[/green] {name}: computed in {folders[name][1]:.1f} s")
        # Only now, with every section computed, is the output folder touched: a mistake found on the way
        # (exit 2) leaves the previous results as they were.
        for name in to_compute:
            folder, seconds = folders[name]
            result = plans[name].load(Path(folder))
            runs[name] = SectionRun(name, SECTIONS[name][1], "ok", result=result, cache=events[name],
                                    seconds=seconds)
            runs[name].files = _copy_entry(Path(folder), out / name)
        for name, run in runs.items():
            if run.status != "ok":
                continue
            if not run.files:  # loaded from the cache
                run.files = _copy_entry(cache.entry_dir(name, run.cache.key), out / name)
                progress.line(f"[green]\u2713[/green] {name}: from cache")
            run.directory = name
            if run.cache.status == "refit":
                progress.line(f"[yellow]! {name}: cache entry was damaged ({escape(run.cache.reason)}); "
                              "refitted[/yellow]")
            run.diagnostics = unique_fits(find_diagnostics(run.result.to_dict(), name))
            for diag in run.diagnostics:
                if not diag.get("ok", False):
                    progress.failure(f"diagnostics of {diag['fit']}: " + "; ".join(diag.get("failures", [])))
    return {name: runs[name] for name in SECTIONS if name in runs}, inputs


def write_index(out: Path, config: MainJobConfig, runs: dict[str, SectionRun], inputs: Inputs,
                config_path: Path | None, timings: dict[str, float], report: dict[str, Any] | None,
                cache: FitCache) -> Path:
    cfg = config_to_dict(config)
    diagnostics = [d for r in runs.values() for d in r.diagnostics]
    index = {
        "format": RESULTS_FORMAT,
        "config_file": str(config_path) if config_path else "bundled default (analyses/default_config.yaml)",
        "config_sha256": sha256_of(cfg),
        "config": cfg,
        "data": inputs.files,
        "sections": {name: run.index_entry() for name, run in runs.items()},
        "diagnostics": diagnostics,
        "all_diagnostics_ok": all(d.get("ok", False) for d in diagnostics),
        "cache": {"dir": str(cache.root), "enabled": cache.enabled},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "report": report,
        "provenance": provenance(seed=config.seed, sampler=cfg["sampler"], config_sha256=sha256_of(cfg),
                                 data_sha256={k: v["sha256"] for k, v in inputs.files.items()}),
    }
    return write_json_atomic(out / RESULTS_INDEX, index)


def run_main_job(
    config: MainJobConfig,
    out: str | Path = DEFAULT_OUT,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    pdf: bool = True,
    config_path: str | Path | None = None,
    participant_data: str | Path | None = None,
    quiet: bool = False,
    jobs: int | None = None,
) -> MainJobResult:
    """Run the analyses (through the cache), write results.json, build report.html (and report.pdf)."""
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", option="--out", file=out)
    out.mkdir(parents=True, exist_ok=True)
    cache = FitCache(Path(cache_dir) if cache_dir else default_cache_dir(out), enabled=use_cache)
    progress = Progress(quiet)
    runs, inputs = run_analyses(config, out, cache=cache,
                                participant_data=Path(participant_data) if participant_data else None,
                                progress=progress, jobs=jobs)
    timings = {"analyses": time.perf_counter() - started}
    cfg_path = Path(config_path) if config_path else None
    index_path = write_index(out, config, runs, inputs, cfg_path, timings, None, cache)
    result = MainJobResult(out, index_path, config, runs, seconds=0.0)

    # The command line composes the layers: this is the one place in analyses/ that calls into reports/
    # (imported here, lazily, so that importing isletbayes.analyses never imports the report layer).
    from isletbayes.reports.report import build_report

    t_report = time.perf_counter()
    with progress.status("building the report (figures, HTML" + (", PDF)" if pdf else ")")):
        files = build_report(out, pdf=pdf)
    timings["report"] = time.perf_counter() - t_report
    timings["total"] = time.perf_counter() - started
    result.html, result.pdf, result.pdf_engine, result.pdf_error = files.html, files.pdf, files.pdf_engine, \
        files.pdf_error
    write_index(out, config, runs, inputs, cfg_path, timings, files.as_dict(out), cache)
    result.seconds = timings["total"]
    progress.line(f"[green]\u2713[/green] report: {files.html}" + (f" and {files.pdf}" if files.pdf else ""))
    if pdf and files.pdf is None:
        progress.failure(f"PDF not written: {files.pdf_error}")
    for problem in files.numbers.get("report_problems", []):
        progress.failure(problem)
    if not result.diagnostics_ok:
        bad = [d["fit"] for d in result.diagnostics if not d.get("ok", False)]
        progress.failure(f"convergence checks in {len(bad)} fit(s): {', '.join(bad)} (see the report)")
    progress.line(f"done in {timings['total']:.1f} s; results index: {index_path}")
    return result


# --- command line -----------------------------------------------------------------------------------------


def _common(config_file: Path | None, out: Path, data: Path | None, no_cache: bool, pdf: bool,
            cache_dir: Path | None, quiet: bool, jobs: int | None) -> MainJobResult:
    config = load_config(config_file)
    if data is not None and not data.is_file():
        raise InputError("no such file", option="--data", file=data)
    if jobs is not None and jobs < 1:
        raise InputError(f"must be >= 1, got {jobs}", option="--jobs")
    return run_main_job(config, out, cache_dir=cache_dir, use_cache=not no_cache, pdf=pdf,
                        config_path=config_file, participant_data=data, quiet=quiet, jobs=jobs)


_CONFIG_HELP = "YAML configuration merged over the bundled default (analyses/default_config.yaml)"
_CACHE_HELP = "fit cache folder (default: $ISLETBAYES_CACHE_DIR, else .isletbayes-cache/ beside --out)"
_JOBS_HELP = "MCMC sections fitted at once in separate processes (default: CPU cores); results do not depend on it"


def run_cli(
    config_file: Optional[Path] = typer.Option(None, "--config", help=_CONFIG_HELP, dir_okay=False),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="output folder for results and the report"),
    no_cache: bool = typer.Option(False, "--no-cache", help="refit everything; read and write no cache"),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="also render report.pdf"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=_CACHE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines (failures are still printed)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help=_JOBS_HELP),
) -> None:
    """Run the whole re-analysis on the bundled published data and write the report."""
    result = _common(config_file, out, None, no_cache, pdf, cache_dir, quiet, jobs)
    print(result.html)


def report_cli(
    config_file: Path = typer.Option(..., "--config", help=_CONFIG_HELP, dir_okay=False),
    out: Path = typer.Option(..., "--out", help="output folder for results and the report"),
    data: Optional[Path] = typer.Option(None, "--data", help="participant-level data (long format CSV)",
                                        dir_okay=False),
    no_cache: bool = typer.Option(False, "--no-cache", help="refit everything; read and write no cache"),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="also render report.pdf"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=_CACHE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines (failures are still printed)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help=_JOBS_HELP),
) -> None:
    """Run the re-analysis for a chosen configuration (and optionally your participant-level data) and
    write the report."""
    result = _common(config_file, out, data, no_cache, pdf, cache_dir, quiet, jobs)
    print(result.html)


if __name__ == "__main__":  # pragma: no cover
    from isletbayes.analyses.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
