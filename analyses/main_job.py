"""The main job: every section of the re-analysis, through the fit cache, composed into one results folder.

:func:`run_sections` runs, in order, each section switched on in the configuration, by calling the same typed
entry points as the command line:

1. **binary**: :func:`isletbayes.analyses.binary.run_binary` (prior panel, MAP prior, safety);
2. **cpeptide**: :func:`isletbayes.analyses.cpeptide.run_cpeptide`;
3. **design**: :func:`isletbayes.analyses.design.run_design` (its simulations, if asked for, draw from the
   cpeptide section's posterior);
4. **durability**: :func:`isletbayes.analyses.durability.run_durability`.

Each section's result is looked up in the fit cache (:mod:`isletbayes.analyses.cache`) by a hash of everything
it depends on, computed only on a miss (the MCMC sections in separate processes, each seeded, so the numbers do
not depend on how many run at once; the C-peptide models compile in another process while the exact sections
run, on the core those leave idle), and saved under ``<out>/<section>/`` by the result's own ``save``. A cache
entry keeps the section's summary and fit checks (:class:`SectionRecord`) beside its files, so that a section
from the cache is copied and indexed without reading its draws (the report reads them once, from ``<out>``).
:func:`write_index` writes ``<out>/results.json``: the configuration and its hash, data-file hashes, per-section
status, cache outcome, time, summary and diagnostics. Building the report is not done here: the command line
composes this job with :mod:`isletbayes.reports` (analyses never import reports) through the ``finish`` hook of
:func:`run_main_job`.

Faults lose nothing (:mod:`isletbayes.analyses.outputs`): before any work the output folder, the cache folder,
the Dask scheduler (when the design simulates on one) and the size of the work (:mod:`isletbayes.analyses.budget`)
are checked; then, holding the output folder's lock, the whole folder (sections, results.json, the report) is
written into a hidden sibling and swapped in for the old one only when complete. An error, a full disk, Ctrl-C or
``kill -9`` on the way leaves the previous results as they were; finished sections are kept in the fit cache,
finished simulations in its ``design-simulations/`` folder, so a rerun resumes. The cache itself is optional: a
cache that cannot be written is reported once and skipped.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field

from isletbayes.analyses import interrupts
from isletbayes.analyses.cache import MANIFEST, CacheEvent, FitCache, fit_key, key_material
from isletbayes.analyses.config import MainJobConfig, config_to_dict
from isletbayes.analyses.inputs import AnalysisInputs, load_inputs
from isletbayes.analyses.outputs import (OutputLock, check_folder_path, check_output_folder, is_filesystem_fault,
                                        staging_folder, swap_into_place)
from isletbayes.analyses.provenance import provenance, sha256_of
from isletbayes.analyses.results import AnalysisResult, FitCheck, Provenance
from isletbayes.data.errors import InputError
from isletbayes.data.io import write_json_atomic

RESULTS_INDEX = "results.json"
RESULTS_FORMAT = "isletbayes-results/2"
SECTION_TITLES = {
    "binary": "Binary end points, prior panel, MAP prior and safety",
    "cpeptide": "C-peptide trajectory and graft function",
    "design": "Phase 3 planning",
    "durability": "Durability scenarios",
}
#: Sections that fit MCMC models: when several must be computed they run in separate processes.
HEAVY_SECTIONS = ("binary", "cpeptide")


# --- what happens, for whoever displays it ----------------------------------------------------------------


@dataclass(frozen=True)
class JobEvent:
    """Something the job did: ``kind`` is one of 'loading', 'skipped', 'computing', 'computed', 'cached',
    'damaged' (a cache entry was damaged and is refitted), 'failed' (a fit failed its convergence checks),
    'warning' (e.g. the cache cannot be written and is skipped), 'waiting' (another run holds the output
    folder's lock)."""

    kind: str
    section: str = ""
    message: str = ""
    seconds: float = 0.0


Listener = Callable[[JobEvent], None]


def _silent(event: JobEvent) -> None:
    return None


# --- results ----------------------------------------------------------------------------------------------


class DataFile(BaseModel):
    path: str
    sha256: str
    bundled: str = ""


class SectionEntry(BaseModel):
    """One section as results.json records it."""

    title: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    dir: str | None = None
    files: list[str] = Field(default_factory=list)
    cache: dict[str, str] | None = None
    diagnostics: list[FitCheck] = Field(default_factory=list)
    summary: dict[str, Any] | None = None


class CacheInfo(BaseModel):
    dir: str
    enabled: bool


class ResultsIndex(BaseModel):
    """results.json: what the main job ran, from what, with which outcome; the report reads it typed."""

    format: str
    config_file: str
    config_sha256: str
    config: MainJobConfig
    data: dict[str, DataFile]
    sections: dict[str, SectionEntry]
    diagnostics: list[FitCheck]
    all_diagnostics_ok: bool
    cache: CacheInfo
    timings_s: dict[str, float] = Field(default_factory=dict)
    report: dict[str, Any] | None = None
    provenance: Provenance


def read_index(out: str | Path) -> ResultsIndex:
    """The results index of an output folder, validated."""
    import json

    from pydantic import ValidationError

    path = Path(out) / RESULTS_INDEX
    try:
        return ResultsIndex.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no results.json here; run `isletbayes run --out DIR` first", file=path) from None
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as bad:
                raise InputError(f"not valid JSON: {bad.msg}", file=path, line=bad.lineno) from None
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"not a results index of this version ({where}: {first['msg']})", file=path) from None


@dataclass
class SectionRecord:
    """What results.json and the job's listeners need of a section, kept in its cache entry's manifest: its
    summary (as JSON) and its fit checks. A section from the cache is described by it without loading its
    draws; the result itself is loaded when asked for (:meth:`MainJobResult.result`)."""

    summary: dict[str, Any] | None
    fit_checks: list[FitCheck]

    @classmethod
    def of(cls, result: AnalysisResult) -> "SectionRecord":
        import json

        from isletbayes.data.io import to_json

        return cls(json.loads(to_json(result.summary())), list(result.fit_checks()))

    @classmethod
    def read(cls, doc: Any) -> "SectionRecord | None":
        """The record in a manifest (None where there is none, or it is not one of this version)."""
        if not isinstance(doc, dict) or set(doc) != {"summary", "fit_checks"}:
            return None
        try:
            return cls(doc["summary"], [FitCheck.model_validate(c) for c in doc["fit_checks"]])
        except Exception:  # noqa: BLE001 - an unreadable record is as good as none: the result is loaded instead
            return None

    def as_json(self) -> dict[str, Any]:
        return {"summary": self.summary, "fit_checks": [c.model_dump(mode="json") for c in self.fit_checks]}


def _record_of(result_type: type[AnalysisResult]) -> Callable[[Path], dict[str, Any]]:
    """The record of a saved section, read back from its folder (so it is the loaded result's, as the report
    will see it). Summaries and fit checks never include the draws, so they are not read."""
    return lambda folder: SectionRecord.of(result_type.load(folder, draws=False)).as_json()


@dataclass
class SectionRun:
    """One section of the main job: what ran, whether it came from the cache, where it was saved.

    ``record`` (summary and fit checks) describes the section; ``result`` is the loaded result, None until
    :meth:`load` reads it (a section from the cache is not loaded unless asked for)."""

    name: str
    status: str  # 'ok' | 'skipped' (switched off)
    reason: str = ""
    result: AnalysisResult | None = None
    cache: CacheEvent | None = None
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    record: SectionRecord | None = None
    result_type: type[AnalysisResult] | None = None

    @property
    def title(self) -> str:
        return SECTION_TITLES[self.name]

    def load(self, folder: Path) -> AnalysisResult | None:
        """The result, loaded from ``folder`` (the section's saved files) at the first request."""
        if self.result is None and self.result_type is not None and self.status == "ok":
            self.result = self.result_type.load(folder)
        return self.result

    @property
    def fit_checks(self) -> list[FitCheck]:
        if self.record is not None:
            return self.record.fit_checks
        return self.result.fit_checks() if self.result is not None else []

    def index_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"title": self.title, "status": self.status, "reason": self.reason,
                                 "seconds": round(self.seconds, 3), "dir": self.name if self.files else None,
                                 "files": self.files, "cache": self.cache.as_dict() if self.cache else None,
                                 "diagnostics": [c.model_dump(mode="json") for c in self.fit_checks]}
        if self.record is not None:
            entry["summary"] = self.record.summary
        elif self.result is not None:
            entry["summary"] = self.result.summary()
        return entry


@dataclass
class MainJobResult:
    out: Path
    index_path: Path
    config: MainJobConfig
    sections: dict[str, SectionRun]
    inputs: AnalysisInputs
    cache: FitCache
    config_path: Path | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fit_checks(self) -> list[FitCheck]:
        return [c for s in self.sections.values() for c in s.fit_checks]

    @property
    def diagnostics_ok(self) -> bool:
        return all(c.ok for c in self.fit_checks)

    def result(self, name: str) -> AnalysisResult | None:
        """The section's result, loaded from the output folder at the first request."""
        run = self.sections.get(name)
        return None if run is None else run.load(self.out / name)


# --- sections ---------------------------------------------------------------------------------------------


@dataclass
class SectionPlan:
    """How to compute one section: the material its cache key hashes, and the calls to compute and load it."""

    name: str
    material: dict[str, Any]
    compute: Callable[[], AnalysisResult]
    result_type: type[AnalysisResult]
    #: starts compiling the section's models in another process (only a speed-up: the draws are the same)
    compile_ahead: Callable[[], list[str]] | None = None


def _wanted(config: MainJobConfig, name: str) -> bool:
    return bool(getattr(config.sections, name) or (name == "binary" and config.sections.safety))


def plan_section(name: str, config: MainJobConfig, inputs: AnalysisInputs, *, cpeptide_key: str | None = None,
                 cpeptide_folder: str | None = None, work_dir: str | None = None,
                 panel_cache: FitCache | None = None) -> SectionPlan:
    """The plan of one section (see the module docstring). The design's simulations (``design.simulate``) draw
    from the cpeptide section's posterior: ``cpeptide_key`` enters the design's cache key, ``cpeptide_folder``
    holds that result, and ``work_dir`` keeps each finished simulation so an interrupted run resumes.
    ``panel_cache`` keeps the design's design-prior panel (:func:`~isletbayes.analyses.design.design_prior_panel`),
    so that a design whose grid, rule or targets changed does not refit the MAP prior and the durability model."""
    seed = config.seed
    if name == "binary":
        from isletbayes.analyses.binary import BinaryResult, run_binary

        binary_cfg, priors = config.binary, config.priors
        if not config.sections.binary:  # safety only: one cheap end point under one exact prior carries it
            binary_cfg = binary_cfg.model_copy(update={"endpoints": ["insulin_independence"]})
            priors = priors.model_copy(update={"panel": ["uniform"]})
        material = key_material("binary", module="isletbayes.analyses.binary",
                                data={"counts": inputs.counts, "comparators": inputs.comparators},
                                priors=priors, settings={"binary": binary_cfg, "sampler": config.sampler,
                                                         "seed": seed, "safety": config.sections.safety})
        return SectionPlan(name, material, lambda: run_binary(binary_cfg, priors=priors, sampler=config.sampler,
                                                              seed=seed, inputs=inputs,
                                                              safety=config.sections.safety), BinaryResult)
    if name == "cpeptide":
        from isletbayes.analyses.cpeptide_result import KEPT_CALIBRATION_PATH, CpeptideResult

        # what the fits read: the participants, or the published means, continuous summaries and counts (the joint
        # model's graft_function_data_from_tables); and the kept SBC file, whose summary the result carries
        data = ({"participant": inputs.participant, "cohort": config.cpeptide.cohort}
                if inputs.participant is not None else
                {"cpeptide_means": inputs.default_rows("cpeptide_means"), "continuous": inputs.continuous,
                 "counts": inputs.counts})
        material = key_material("cpeptide", module="isletbayes.analyses.cpeptide",
                                data={**data, "kept_calibration": KEPT_CALIBRATION_PATH},
                                priors={"trajectory": config.cpeptide.priors, "link": config.cpeptide.link_priors},
                                settings={"cpeptide": config.cpeptide, "sampler": config.sampler, "seed": seed})

        def compute_cpeptide() -> CpeptideResult:
            from isletbayes.analyses.cpeptide import run_cpeptide  # PyMC: only when the section is computed

            return run_cpeptide(config.cpeptide, sampler=config.sampler, seed=seed, inputs=inputs)

        def compile_cpeptide() -> list[str]:
            from isletbayes.analyses.cpeptide import compile_ahead

            return compile_ahead(config.cpeptide, sampler=config.sampler, seed=seed, inputs=inputs)

        return SectionPlan(name, material, compute_cpeptide, CpeptideResult, compile_ahead=compile_cpeptide)
    if name == "design":
        from isletbayes.analyses.design import DesignInputs, DesignResult, key_inputs, run_design

        cfg = config.design
        design_inputs = DesignInputs(inputs, config.priors, config.sampler, config.durability)
        material = key_material("design", module="isletbayes.analyses.design", **key_inputs(design_inputs),
                                settings={"design": cfg, "durability": config.durability, "sampler": config.sampler,
                                          "seed": seed,
                                          "simulation_source": cpeptide_key if cfg.simulate else None})

        def compute() -> DesignResult:
            draws = source = None
            if cfg.simulate:
                from isletbayes.analyses.cpeptide_result import CpeptideResult

                posterior = CpeptideResult.load(Path(cpeptide_folder))
                draws, source = posterior.parameter_draws(4000, seed), posterior.diagnostics
            return run_design(cfg, seed=seed, design=design_inputs, simulation_draws=draws,
                              simulation_source=source,
                              simulation_dir=None if work_dir is None else Path(work_dir) / fit_key(material),
                              panel_cache=panel_cache)

        return SectionPlan(name, material, compute, DesignResult)
    if name == "durability":
        from isletbayes.analyses.durability import DurabilityResult, run_durability

        phase12 = inputs.count("insulin_independence")
        material = key_material("durability", module="isletbayes.analyses.durability",
                                data={"phase12": phase12, "durability": inputs.durability},
                                priors={"year1": "uniform"}, settings={"durability": config.durability,
                                                                       "seed": seed})
        return SectionPlan(name, material, lambda: run_durability(config.durability, seed=seed, phase12=phase12,
                                                                  durability=inputs.durability), DurabilityResult)
    raise KeyError(name)


def _quiet_pymc() -> None:
    """PyMC logs each sampler start at INFO; the main job reports its own progress instead."""
    import logging

    for name in ("pymc", "pymc.sampling", "pymc.stats.convergence"):
        logging.getLogger(name).setLevel(logging.WARNING)


def compute_section(name: str, config_doc: dict, participant_data: str | None, cache_root: str | None,
                    scratch: str, cpeptide: tuple[str, str] | None = None
                    ) -> tuple[str, float, str, dict[str, Any]]:
    """Compute one section from scratch (in a worker process or in-line) and save it: into the cache when
    ``cache_root`` is given and can be written, else into ``scratch``. ``cpeptide``: (key, folder) of the
    cpeptide section, which the design's simulations draw from. Returns the folder, the seconds it took, a
    warning ('' if none) to pass on (the cache could not be written), and the section's record
    (:class:`SectionRecord`, as JSON), read back from the saved folder."""
    _quiet_pymc()
    config = MainJobConfig.model_validate(config_doc)
    inputs = load_inputs(config.data, participant_data)
    warnings: list[str] = []
    cache = FitCache(Path(cache_root), on_warning=warnings.append) if cache_root is not None else None

    def plan_with(work_root: str) -> SectionPlan:
        return plan_section(name, config, inputs, cpeptide_key=cpeptide[0] if cpeptide else None,
                            cpeptide_folder=cpeptide[1] if cpeptide else None,
                            work_dir=str(Path(work_root) / "design-simulations"), panel_cache=cache)

    plan = plan_with(cache_root if cache_root is not None else scratch)
    started = time.perf_counter()
    try:
        result = plan.compute()
    except OSError as err:
        # the design's finished simulations are kept in the cache; a cache disk that fails (full, read-only)
        # must not sink the run: say so, and simulate again in the scratch folder
        if cache_root is None or err.filename is None or not is_filesystem_fault(err) or \
                not Path(err.filename).absolute().is_relative_to(Path(cache_root).absolute()):
            raise
        warnings.append(f"the fit cache cannot be written ({err.filename}: {err.strerror}); the {name} section "
                        "is computed without keeping its finished simulations there")
        plan = plan_with(scratch)
        result = plan.compute()
    seconds = time.perf_counter() - started
    record = _record_of(plan.result_type)
    folder = (cache.store(name, fit_key(plan.material), plan.material, result.save, record=record)
              if cache is not None else None)
    if folder is None:
        folder = Path(scratch) / name
        interrupts.checkpoint()
        result.save(folder)
        return str(folder), seconds, "; ".join(warnings), record(folder)
    return str(folder), seconds, "; ".join(warnings), cache.record(folder)


def replace_dir(final: Path, write: Callable[[Path], Any]) -> list[str]:
    """Write a folder's files into a temporary sibling, then swap it in for the old one (never half-written);
    returns the files written, relative to the folder."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        swap_into_place(tmp, final)
        return files
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _copy_entry(src: Path, dest: Path) -> list[str]:
    """Copy a saved section (a cache entry or a scratch folder) to the output folder, manifest left out."""
    if not src.is_dir():  # removed since it was found (someone cleaned the cache during the run)
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(src))

    def write(tmp: Path) -> None:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src)
            if rel.as_posix() == MANIFEST:
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, tmp / rel)

    return replace_dir(dest, write)


def run_sections(config: MainJobConfig, out: Path, *, cache: FitCache, participant_data: Path | None = None,
                 jobs: int | None = None, listener: Listener = _silent, inputs: AnalysisInputs | None = None
                 ) -> tuple[dict[str, SectionRun], AnalysisInputs]:
    """Run every section switched on, through the cache; save each under ``out/<section>/``.

    Cached sections are copied (not loaded: :class:`SectionRecord`); the others are computed, the exact ones
    first (a mistake in their settings stops the run in seconds; meanwhile the MCMC sections' models compile in
    another process: :attr:`SectionPlan.compile_ahead`), then the MCMC ones in up to ``jobs`` worker
    processes at once (default: as many as there are CPU cores, at most the number of such sections), then the
    design's simulations, which draw from the C-peptide section. ``inputs``: the data, if already loaded. Worker processes ignore Ctrl-C; on an
    interrupt they are stopped at once (what they were fitting is lost, every section already stored in the
    cache is kept)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    _quiet_pymc()
    if inputs is None:
        listener(JobEvent("loading", message="loading and validating the data"))
        inputs = load_inputs(config.data, participant_data)
    runs: dict[str, SectionRun] = {}
    plans: dict[str, SectionPlan] = {}
    events: dict[str, CacheEvent] = {}
    simulate = config.sections.design and config.design.simulate > 0
    if simulate and not config.sections.cpeptide:
        raise InputError("the design's simulations draw from the C-peptide re-analysis: switch sections.cpeptide "
                         "on, or set design.simulate to 0", key="sections.cpeptide")
    for name in SECTION_TITLES:
        if not _wanted(config, name):
            runs[name] = SectionRun(name, "skipped", f"switched off in the configuration (sections.{name})")
            listener(JobEvent("skipped", name, f"sections.{name} is false"))
            continue
        cpeptide_key = fit_key(plans["cpeptide"].material) if name == "design" and simulate else None
        plan = plan_section(name, config, inputs, cpeptide_key=cpeptide_key)
        plans[name] = plan
        key = fit_key(plan.material)
        if not cache.enabled:
            events[name] = CacheEvent(name, key, "disabled")
            continue
        started = time.perf_counter()
        entry = cache.lookup(name, key)
        record = SectionRecord.read(cache.record(entry)) if entry is not None else None
        result = corruption = None
        if entry is not None and record is None:  # an entry stored without a record: load it (a failure refits)
            result, corruption = cache.fetch(name, key, plan.result_type.load)
        elif entry is None:
            corruption = cache.last_corruption
        if record is None and result is None:
            events[name] = CacheEvent(name, key, "refit" if corruption else "miss", corruption or "")
            if corruption:
                listener(JobEvent("damaged", name, corruption))
            continue
        events[name] = CacheEvent(name, key, "hit")
        runs[name] = SectionRun(name, "ok", result=result, cache=events[name], seconds=time.perf_counter() - started,
                                record=record, result_type=plan.result_type)

    to_compute = [n for n in plans if n not in runs]
    heavy = [n for n in to_compute if n in HEAVY_SECTIONS]
    n_jobs = max(1, min(jobs or (os.cpu_count() or 1), len(heavy)))
    config_doc = config.model_dump(mode="json")
    with tempfile.TemporaryDirectory(prefix="isletbayes-scratch-") as scratch:
        folders: dict[str, tuple[str, float, str, dict[str, Any]]] = {}

        def args(n: str) -> tuple:
            cpeptide = None
            if n == "design" and simulate:
                key = fit_key(plans["cpeptide"].material)
                cpeptide = (key, folders["cpeptide"][0] if "cpeptide" in folders
                            else str(cache.entry_dir("cpeptide", key)))
            cache_root = str(cache.root) if cache.enabled and cache.writable else None
            return n, config_doc, str(participant_data) if participant_data else None, cache_root, scratch, cpeptide

        def finished(n: str, outcome: tuple[str, float, str, dict[str, Any]]) -> None:
            folders[n] = outcome
            if outcome[2]:
                cache._unwritable(outcome[2])  # the worker could not store: say so once, store nothing more
            if cache.enabled and not cache.writable:
                events[n] = CacheEvent(n, events[n].key, "not stored", outcome[2] or cache.unwritable_reason)
            listener(JobEvent("computed", n, seconds=outcome[1]))

        def compute_here(name: str) -> None:
            listener(JobEvent("computing", name, SECTION_TITLES[name].lower()))
            finished(name, compute_section(*args(name)))

        try:
            # the exact sections first (seconds): a mistake in their settings is found before minutes of MCMC;
            # meanwhile the MCMC sections' models compile in another process, on the core they leave idle
            exact = [n for n in to_compute if n not in HEAVY_SECTIONS and not (n == "design" and simulate)]
            if exact:
                for name in heavy:
                    if plans[name].compile_ahead is not None:
                        plans[name].compile_ahead()
            for name in exact:
                compute_here(name)
            if n_jobs > 1:
                listener(JobEvent("computing", ", ".join(heavy), f"{n_jobs} processes"))
                pool = ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn"),
                                           initializer=interrupts.worker_init, initargs=(os.getpid(),))
                try:
                    with interrupts.children_ignore_interrupts():  # the workers start here
                        futures = {pool.submit(compute_section, *args(n)): n for n in heavy}
                    for future in as_completed(futures):
                        finished(futures[future], future.result())
                except BaseException:
                    interrupts.acknowledge()
                    interrupts.terminate_pool(pool)
                    raise
                pool.shutdown(wait=True)
            for name in to_compute:
                if name not in folders:
                    compute_here(name)
            # Only now, with every section computed, is the output folder written: a mistake found on the way
            # (exit 2) leaves the previous results as they were.
            interrupts.checkpoint()
            for name in to_compute:
                folder, seconds, _, record = folders[name]
                runs[name] = SectionRun(name, "ok", cache=events[name], seconds=seconds,
                                        record=SectionRecord.read(record), result_type=plans[name].result_type)
                if runs[name].record is None:  # cannot happen: compute_section reads every record back
                    runs[name].result = plans[name].result_type.load(Path(folder))
                runs[name].files = _copy_entry(Path(folder), out / name)
        except BaseException:
            interrupts.acknowledge()
            raise
    for name, run in runs.items():
        if run.status != "ok":
            continue
        if not run.files:  # loaded from the cache
            run.files = _copy_entry(cache.entry_dir(name, run.cache.key), out / name)
            listener(JobEvent("cached", name))
        for check in run.fit_checks:
            if not check.ok:
                listener(JobEvent("failed", name, f"diagnostics of {check.fit}: " + "; ".join(check.failures)))
    return {name: runs[name] for name in SECTION_TITLES if name in runs}, inputs


def write_index(job: MainJobResult, report: dict[str, Any] | None = None) -> Path:
    """Write ``<out>/results.json``: configuration, data hashes, sections, diagnostics, timings, report."""
    cfg = config_to_dict(job.config)
    checks = [c.model_dump(mode="json") for c in job.fit_checks]
    index = {
        "format": RESULTS_FORMAT,
        "config_file": str(job.config_path) if job.config_path else "default configuration (analyses/config.py)",
        "config_sha256": sha256_of(cfg),
        "config": cfg,
        "data": job.inputs.files,
        "sections": {name: run.index_entry() for name, run in job.sections.items()},
        "diagnostics": checks,
        "all_diagnostics_ok": all(c["ok"] for c in checks),
        "cache": {"dir": str(job.cache.root), "enabled": job.cache.enabled},
        "timings_s": {k: round(v, 3) for k, v in job.timings.items()},
        "report": report,
        "provenance": provenance(seed=job.config.seed, sampler=cfg["sampler"], config_sha256=sha256_of(cfg),
                                 data_sha256={k: v["sha256"] for k, v in job.inputs.files.items()}),
    }
    return write_json_atomic(job.out / RESULTS_INDEX, index)


def data_size(inputs: AnalysisInputs) -> tuple[int, int]:
    """(participants, C-peptide observations) the C-peptide fit will see: the published cohort's 12 and its
    four visits' means, or the participant-level file's."""
    frame = inputs.participant
    if frame is None or frame.empty:
        return 12, 48
    participants = int(frame["participant"].nunique())
    observations = int((frame["measure"] == "cpeptide").sum()) if "measure" in frame.columns else len(frame)
    return participants, observations


def run_main_job(config: MainJobConfig, out: str | Path, *, cache_dir: str | Path | None = None,
                 use_cache: bool = True, config_path: str | Path | None = None,
                 participant_data: str | Path | None = None, jobs: int | None = None,
                 listener: Listener = _silent,
                 finish: Callable[[MainJobResult], dict[str, Any] | None] | None = None) -> MainJobResult:
    """Run the analyses (through the cache) and write the output folder ``out`` whole (see the module docstring).

    ``finish(job)``, if given, is called when the sections and results.json are written, with ``job.out`` the
    folder being prepared: the command line builds the report there; what it returns is recorded in
    results.json as ``report``. The folder then replaces ``out``; the returned job points at ``out``."""
    from isletbayes.analyses import budget
    from isletbayes.analyses.cache import ENV_CACHE_DIR, default_cache_dir

    started = time.perf_counter()
    out = check_output_folder(out, option="--out", marker=RESULTS_INDEX)
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir(out)
    if use_cache:
        door = "--cache-dir" if cache_dir else None
        note = "" if cache_dir else (f" (from ${ENV_CACHE_DIR})" if os.environ.get(ENV_CACHE_DIR) else
                                     " (the default cache folder beside the output folder; choose another with "
                                     "--cache-dir)")
        cache_root = check_folder_path(cache_root, option=door, what="fit cache folder", note=note)
    listener(JobEvent("loading", message="loading and validating the data"))
    inputs = load_inputs(config.data, Path(participant_data) if participant_data else None)
    participants, observations = data_size(inputs)
    budget.check(budget.estimate_main_job(config, n_participants=participants, n_observations=observations),
                 allow=budget.allow_large(config))
    if config.sections.design and config.design.simulate and config.design.scheduler:
        from isletbayes.analyses.simulation import check_scheduler

        check_scheduler(config.design.scheduler)

    cache = FitCache(cache_root, enabled=use_cache, on_warning=lambda m: listener(JobEvent("warning", message=m)))
    with OutputLock(out, on_wait=lambda m: listener(JobEvent("waiting", message=m)), option="--out"):
        cache.prepare()
        with staging_folder(out) as stage:
            sections, inputs = run_sections(config, stage, cache=cache,
                                            participant_data=Path(participant_data) if participant_data else None,
                                            jobs=jobs, listener=listener, inputs=inputs)
            job = MainJobResult(stage, stage / RESULTS_INDEX, config, sections, inputs, cache,
                                Path(config_path) if config_path else None,
                                timings={"analyses": time.perf_counter() - started})
            write_index(job)
            if finish is not None:
                report = finish(job)
                write_index(job, report=report)
        job.out, job.index_path = out, out / RESULTS_INDEX
    return job
