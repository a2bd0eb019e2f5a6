"""The fit cache: a hit reuses, any change refits, a corrupt or half-written entry is detected and refitted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from isletbayes.analyses import cache as cache_mod
from isletbayes.analyses.cache import FitCache, default_cache_dir, fit_key, key_material
from isletbayes.data.io import write_datatree_atomic, write_json_atomic

DATA = pd.DataFrame({"endpoint": ["insulin_independence"], "r": [10], "n": [12]})
PRIORS = {"uniform": {"a": 1.0, "b": 1.0}}
SETTINGS = {"draws": 100, "seed": 1}


class FakeFit:
    """Stands in for an analysis result: draws in netCDF, a summary in JSON, like the real ones."""

    def __init__(self, draws: np.ndarray, summary: dict):
        self.draws, self.summary = draws, summary

    def save(self, outdir: Path) -> None:
        tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"theta": (("chain", "draw"), self.draws)})})
        write_datatree_atomic(outdir / "draws.nc", tree)
        write_json_atomic(outdir / "summary.json", self.summary)

    @classmethod
    def load(cls, outdir: Path) -> "FakeFit":
        tree = xr.open_datatree(outdir / "draws.nc", engine="h5netcdf")
        draws = tree["posterior"]["theta"].values.copy()
        tree.close()
        return cls(draws, json.loads((outdir / "summary.json").read_text()))


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self) -> FakeFit:
        self.calls += 1
        rng = np.random.default_rng(self.calls)
        return FakeFit(rng.beta(11, 3, size=(2, 50)), {"mean": 0.79, "call": self.calls})


def run(cache: FitCache, compute: Counter, *, data=DATA, priors=PRIORS, settings=SETTINGS):
    material = key_material("fake", data=data, priors=priors, settings=settings)
    return cache.get_or_compute("fake", material, compute, lambda r, d: r.save(d), FakeFit.load)


def test_second_run_is_a_hit_with_identical_numbers(tmp_path):
    cache, compute = FitCache(tmp_path / "c"), Counter()
    first, ev1 = run(cache, compute)
    second, ev2 = run(cache, compute)
    assert (ev1.status, ev2.status) == ("miss", "hit")
    assert compute.calls == 1
    np.testing.assert_array_equal(first.draws, second.draws)
    assert second.summary == first.summary
    manifest = json.loads((cache.entry_dir("fake", ev1.key) / "manifest.json").read_text())
    assert set(manifest["files"]) == {"draws.nc", "summary.json"}
    assert manifest["key_material"]["analysis"] == "fake"


@pytest.mark.parametrize(
    "change",
    [
        {"data": DATA.assign(r=[9])},
        {"data": DATA.assign(n=DATA["n"].astype(float))},  # same numbers, different type
        {"priors": {"uniform": {"a": 1.0, "b": 1.0000001}}},
        {"settings": {"draws": 100, "seed": 2}},
        {"settings": {"draws": 101, "seed": 1}},
    ],
    ids=["data-value", "data-dtype", "prior", "seed", "draws"],
)
def test_any_change_to_inputs_refits(tmp_path, change):
    cache, compute = FitCache(tmp_path / "c"), Counter()
    run(cache, compute)
    _, event = run(cache, compute, **change)
    assert event.status == "miss"
    assert compute.calls == 2


def test_package_or_isletbayes_version_change_refits(tmp_path, monkeypatch):
    cache, compute = FitCache(tmp_path / "c"), Counter()
    run(cache, compute)
    real = cache_mod.package_versions()
    for name in ("pymc", "isletbayes"):
        monkeypatch.setattr(cache_mod, "package_versions", lambda name=name: {**real, name: "999.0"})
        _, event = run(cache, compute)
        assert event.status == "miss", name
    assert compute.calls == 3


def test_code_change_changes_the_key(monkeypatch):
    before = fit_key(key_material("fake", data=DATA, priors=PRIORS, settings=SETTINGS))
    monkeypatch.setattr(cache_mod, "code_fingerprint", lambda module=None: "0" * 64)
    assert fit_key(key_material("fake", data=DATA, priors=PRIORS, settings=SETTINGS)) != before


def test_only_the_code_an_analysis_runs_enters_its_key():
    closure = cache_mod.module_closure("isletbayes.analyses.durability")
    assert {"isletbayes.analyses.durability", "isletbayes.data.loaders", "isletbayes.data"} <= set(closure)
    # the report, the cache itself and unrelated models do not: editing them keeps the durability fit
    assert not {"isletbayes.reports.report", "isletbayes.analyses.cache", "isletbayes.models.cpeptide_trajectory"} & set(closure)
    # a submodule named in `from package import submodule` is followed
    assert "isletbayes.models.cpeptide_trajectory" in cache_mod.module_closure("isletbayes.analyses.cpeptide")
    assert cache_mod.code_fingerprint("isletbayes.analyses.durability") != cache_mod.code_fingerprint(
        "isletbayes.analyses.design")


@pytest.mark.parametrize("section", ["binary", "cpeptide", "design", "durability"])
def test_editing_the_report_or_the_main_job_keeps_every_section_fit(section):
    # `from isletbayes import data` (analyses/inputs.py) names the top-level package, whose lazy loaders name every
    # module: followed, they put the report and the main job into every section's key
    closure = set(cache_mod.module_closure(f"isletbayes.analyses.{section}"))
    assert {f"isletbayes.analyses.{section}", "isletbayes.analyses.config", "isletbayes.models"} <= closure
    assert not {cache_mod.FACADE, "isletbayes.analyses.main_job", "isletbayes.analyses.cli"} & closure
    assert not [name for name in closure if name.startswith("isletbayes.reports")]


def _parsed_imports(source: str) -> list[str]:
    """What the closure needs of a source, found by Python's parser over every syntax node."""
    import ast

    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("isletbayes.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("isletbayes"):
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return sorted(names)


def test_the_import_scan_finds_exactly_what_the_parser_finds():
    """The closure reads imports from the text (``imported_names``): in every source file of the package, and in
    the import forms it must handle, it finds exactly the isletbayes names that a full parse finds."""
    root = Path(cache_mod.__file__).resolve().parents[1]
    files = [path for name in ("data", "models", "analyses", "reports", "api") for path in sorted(
        (root / name).rglob("*.py"))]
    assert len(files) > 40
    for path in files:
        source = path.read_text(encoding="utf-8")
        assert sorted(cache_mod.imported_names(source)) == _parsed_imports(source), path
    forms = ("import isletbayes.data.io as io, os\n"
             "from isletbayes.models import (\n    mixtures,  # comment\n    sampling as s,\n)\n"
             "from isletbayes.analyses.config import a, \\\n    b\n"
             "def f():\n    try:\n        pass\n    except E:\n        from isletbayes.reports import html\n"
             "    else:\n        import isletbayes.analyses.cache\n")
    assert sorted(cache_mod.imported_names(forms)) == _parsed_imports(forms) == sorted([
        "isletbayes.data.io", "isletbayes.models", "isletbayes.models.mixtures", "isletbayes.models.sampling",
        "isletbayes.analyses.config", "isletbayes.analyses.config.a", "isletbayes.analyses.config.b",
        "isletbayes.reports", "isletbayes.reports.html", "isletbayes.analyses.cache"])


def test_data_file_contents_not_name_enter_the_key(tmp_path):
    f = tmp_path / "counts.csv"
    f.write_text("r,n\n10,12\n")
    k1 = fit_key(key_material("fake", data=f, priors=PRIORS, settings=SETTINGS))
    f.write_text("r,n\n9,12\n")
    k2 = fit_key(key_material("fake", data=f, priors=PRIORS, settings=SETTINGS))
    assert k1 != k2


def _corrupt_manifest_missing(entry: Path) -> None:
    (entry / "manifest.json").unlink()


def _corrupt_json_byte(entry: Path) -> None:
    p = entry / "summary.json"
    raw = bytearray(p.read_bytes())
    raw[5] ^= 0x01
    p.write_bytes(bytes(raw))


def _corrupt_missing_file(entry: Path) -> None:
    (entry / "draws.nc").unlink()


def _corrupt_truncated_netcdf_with_matching_manifest(entry: Path) -> None:
    # A truncated netCDF whose manifest was (wrongly) rewritten to match: only opening the file catches it.
    p = entry / "draws.nc"
    p.write_bytes(p.read_bytes()[:200])
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["files"]["draws.nc"] = {"sha256": cache_mod._file_sha256(p), "bytes": p.stat().st_size}
    (entry / "manifest.json").write_text(json.dumps(manifest))


def _corrupt_garbled_manifest(entry: Path) -> None:
    (entry / "manifest.json").write_text("{not json")


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (_corrupt_manifest_missing, "no manifest"),
        (_corrupt_json_byte, "checksum mismatch in summary.json"),
        (_corrupt_missing_file, "missing file draws.nc"),
        (_corrupt_truncated_netcdf_with_matching_manifest, "unreadable netCDF draws.nc"),
        (_corrupt_garbled_manifest, "unreadable manifest"),
    ],
    ids=["no-manifest", "flipped-byte", "missing-file", "truncated-netcdf", "garbled-manifest"],
)
def test_corrupt_entry_is_detected_and_refitted(tmp_path, corrupt, reason):
    cache, compute = FitCache(tmp_path / "c"), Counter()
    _, ev1 = run(cache, compute)
    entry = cache.entry_dir("fake", ev1.key)
    corrupt(entry)
    assert cache.validate(entry, ev1.key) is not None
    result, ev2 = run(cache, compute)
    assert ev2.status == "refit"
    assert reason in ev2.reason
    assert compute.calls == 2
    assert result.summary["call"] == 2
    # the refitted entry is whole again and is reused next time
    assert cache.validate(entry, ev1.key) is None
    _, ev3 = run(cache, compute)
    assert ev3.status == "hit" and compute.calls == 2


def test_entry_that_fails_to_load_is_refitted(tmp_path):
    cache, compute = FitCache(tmp_path / "c"), Counter()
    material = key_material("fake", data=DATA, priors=PRIORS, settings=SETTINGS)
    cache.get_or_compute("fake", material, compute, lambda r, d: r.save(d), FakeFit.load)

    def broken_load(_):
        raise KeyError("theta")

    _, event = cache.get_or_compute("fake", material, compute, lambda r, d: r.save(d), broken_load)
    assert event.status == "refit" and "did not load" in event.reason
    assert compute.calls == 2


def test_a_failing_save_leaves_no_entry_and_no_temp_folder(tmp_path):
    cache, compute = FitCache(tmp_path / "c"), Counter()
    material = key_material("fake", data=DATA, priors=PRIORS, settings=SETTINGS)

    def half_save(result, outdir):
        (outdir / "draws.nc").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.get_or_compute("fake", material, compute, half_save, FakeFit.load)
    assert not cache.entry_dir("fake", fit_key(material)).exists()
    assert list((tmp_path / "c" / "fake").iterdir()) == []
    _, event = run(cache, compute)
    assert event.status == "miss"


def test_disabled_cache_always_computes_and_stores_nothing(tmp_path):
    cache, compute = FitCache(tmp_path / "c", enabled=False), Counter()
    run(cache, compute)
    _, event = run(cache, compute)
    assert event.status == "disabled" and compute.calls == 2
    assert not (tmp_path / "c").exists()


def test_default_cache_dir_is_beside_the_output_or_from_env(tmp_path, monkeypatch):
    monkeypatch.delenv("ISLETBAYES_CACHE_DIR", raising=False)
    assert default_cache_dir(tmp_path / "reports" / "out") == (tmp_path / "reports" / ".isletbayes-cache")
    monkeypatch.setenv("ISLETBAYES_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_dir(tmp_path / "out") == tmp_path / "elsewhere"


def test_the_code_fingerprint_imports_nothing():
    """Computing a key reads the sources from disk: a warm run does not import an analysis to find its key."""
    import subprocess
    import sys

    code = ("import sys\nfrom isletbayes.analyses.cache import code_fingerprint, module_closure\n"
            "before = set(sys.modules)\n"
            "closure = module_closure('isletbayes.analyses.cpeptide')\n"
            "code_fingerprint('isletbayes.analyses.cpeptide')\n"
            "new = sorted(m for m in set(sys.modules) - before if m.startswith(('isletbayes', 'pymc', 'pytensor')))\n"
            "print(len(closure), new)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    n, new = out.stdout.strip().split(" ", 1)
    assert int(n) > 5 and new == "[]"


def test_an_entry_keeps_its_record(tmp_path):
    cache, compute = FitCache(tmp_path / "c"), Counter()
    material = key_material("fake", data=DATA, priors=PRIORS, settings=SETTINGS)
    result = compute()
    folder = cache.store("fake", fit_key(material), material, result.save,
                         record=lambda d: {"mean": FakeFit.load(d).summary["mean"]})
    assert cache.record(folder) == {"mean": 0.79}
    assert cache.validate(folder, fit_key(material)) is None
    # an entry stored without one has none
    other = key_material("fake", data=DATA, priors=PRIORS, settings={**SETTINGS, "seed": 2})
    assert cache.record(cache.store("fake", fit_key(other), other, result.save)) is None
