"""Typed analysis results, and the one way every result is saved to and loaded from a folder.

A result is a pydantic model (:class:`AnalysisResult`) whose fields are typed: numbers, strings, nested result
models, tables as :class:`pandas.DataFrame` (the annotated type :data:`Frame`), beta and normal mixtures
(:data:`BetaMix`, :data:`NormalMix`), convergence diagnostics, and posterior draws as ArviZ DataTrees. It is
saved as

* ``<JSON_FILE>``: every field but the draws, as JSON (floats written with Python's ``repr``, so a result read
  back gives the same numbers to the last digit);
* one netCDF file per DataTree (``NETCDF``: field -> file name, ``{key}`` standing for the key of a dict field);
* optionally a CSV copy of a table for spreadsheet users (``CSV``: field -> file name).

Files are written atomically (:mod:`isletbayes.data.io`) and the JSON file last, so its presence means the result
is whole. :meth:`AnalysisResult.load` reads them back into the same typed object; ``load(folder, draws=False)``
leaves the DataTree fields at their defaults (None, or no entries), for readers that use only the tables and
numbers (the report, the main job's section records): reading the netCDF files is most of the time of a load.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator

from isletbayes.data.errors import InputError
from isletbayes.data.io import to_json, write_datatree_atomic, write_json_atomic, write_text_atomic
from isletbayes.models.mixtures import BetaMixture, NormalMixture


# --- tables -----------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if value is pd.NA:  # a missing value of a nullable column (Int64, boolean)
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def frame_to_json(frame: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as plain JSON: columns, index (with its name), rows, dtypes. Round-trips exactly."""
    return {
        "columns": [str(c) for c in frame.columns],
        "index_name": frame.index.name,
        "index": [_plain(v) for v in frame.index.tolist()],
        "data": [[_plain(v) for v in row] for row in frame.itertuples(index=False, name=None)],
        "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
    }


#: dtypes restored on reading (as prefixes, any case: float64, Int64, uint8, boolean, str, string); others are as
#: the DataFrame constructor infers them
_RESTORED = ("float", "int", "uint", "bool", "str", "string")


def frame_from_json(value: Any) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value
    if not isinstance(value, dict) or "columns" not in value or "data" not in value:
        raise ValueError("expected a table (columns, index, data)")
    frame = pd.DataFrame(value["data"], columns=value["columns"], index=value.get("index"))
    frame.index.name = value.get("index_name")
    for column, dtype in value.get("dtypes", {}).items():
        # converted only where the constructor inferred another dtype (14 of 428 columns of a main job's results):
        # astype to the same dtype changes nothing, and a warm report loads 50 tables
        if dtype.lower().startswith(_RESTORED) and str(frame[column].dtype) != dtype:
            frame[column] = frame[column].astype(dtype)
    return frame


Frame = Annotated[pd.DataFrame, PlainValidator(frame_from_json), PlainSerializer(frame_to_json, when_used="json")]


def _mixture_validator(cls):
    def validate(value: Any):
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise ValueError(f"expected a {cls.__name__} or its dict")

    return validate


BetaMix = Annotated[BetaMixture, PlainValidator(_mixture_validator(BetaMixture)),
                    PlainSerializer(lambda m: m.to_dict(), when_used="json")]
NormalMix = Annotated[NormalMixture, PlainValidator(_mixture_validator(NormalMixture)),
                      PlainSerializer(lambda m: m.to_dict(), when_used="json")]
DataTreeField = Annotated[Any, Field(exclude=True)]


class Provenance(BaseModel):
    """How a result was produced: its settings (seeds included), package versions, commit, time, platform."""

    settings: dict[str, Any] = Field(default_factory=dict)
    package_versions: dict[str, str] = Field(default_factory=dict)
    git_commit: str = ""
    created_utc: str = ""
    platform: str = ""


class FitCheck(BaseModel):
    """One MCMC fit's convergence diagnostics, named by what the fit is."""

    fit: str
    ok: bool
    max_rhat: float | None = None
    min_ess_bulk: float | None = None
    min_ess_tail: float | None = None
    divergences: int | None = None
    min_ebfmi: float | None = None
    n_chains: int | None = None
    n_draws: int | None = None
    treedepth_saturated: int | None = None  # transitions that hit the maximum tree depth (None: not recorded)
    failures: list[str] = Field(default_factory=list)
    also: list[str] = Field(default_factory=list)  # other fits that reuse this one

    @classmethod
    def of(cls, name: str, diagnostics: Any) -> "FitCheck":
        d = diagnostics.as_dict() if hasattr(diagnostics, "as_dict") else dict(diagnostics)
        keep = {k: _plain(d.get(k)) for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences",
                                               "min_ebfmi", "n_chains", "n_draws", "treedepth_saturated")}
        return cls(fit=name, ok=bool(d.get("ok", not d.get("failures"))), failures=list(d.get("failures", [])),
                   **keep)


class ResultModel(BaseModel):
    """Base of the typed pieces of a result (tables, mixtures and arrays allowed)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=True)


class AnalysisResult(ResultModel):
    """Base of every analysis result: typed fields, saved and loaded by one helper."""

    JSON_FILE: ClassVar[str] = "result.json"
    NETCDF: ClassVar[dict[str, str]] = {}
    CSV: ClassVar[dict[str, str]] = {}
    ANALYSIS: ClassVar[str] = ""

    provenance: Provenance = Field(default_factory=Provenance)

    # --- what the main job and the report ask of every result ---
    def fit_checks(self) -> list[FitCheck]:
        """Every MCMC fit behind this result with its diagnostics (none for an exact analysis)."""
        return []

    @property
    def diagnostics_ok(self) -> bool:
        return all(check.ok for check in self.fit_checks())

    def summary(self) -> dict[str, Any]:
        """Every field but the draws and the provenance, as plain JSON: what `--json` prints and what
        results.json holds for the section (identical through every door)."""
        return json.loads(to_json(self.model_dump(mode="json", exclude={"provenance"})))

    # --- persistence ---
    def save(self, folder: str | Path) -> list[str]:
        """Write the result into ``folder``; returns the file names written (relative to it)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[str] = []
        for field, pattern in self.NETCDF.items():
            value = getattr(self, field)
            items = value.items() if isinstance(value, dict) else [("", value)]
            for key, tree in items:
                if tree is None:
                    continue
                name = pattern.format(key=key)
                write_datatree_atomic(folder / name, tree)
                written.append(name)
        for field, name in self.CSV.items():
            frame = getattr(self, field)
            if isinstance(frame, pd.DataFrame) and len(frame):
                write_text_atomic(folder / name, frame.to_csv(index=frame.index.name is not None))
                written.append(name)
        # last: its presence means everything else is written
        write_json_atomic(folder / self.JSON_FILE, self.model_dump(mode="json"))
        written.append(self.JSON_FILE)
        return sorted(written)

    @classmethod
    def load(cls, folder: str | Path, *, draws: bool = True):
        """Read a result saved by :meth:`save` back into its typed form; with ``draws=False`` without its posterior
        draws (every DataTree field keeps its default, None or no entries; the netCDF files are not opened)."""
        folder = Path(folder)
        path = folder / cls.JSON_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"no {cls.ANALYSIS or 'analysis'} result here (run `isletbayes "
                             f"{cls.ANALYSIS or '...'} --out DIR` first)", file=path) from None
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON: {err.msg}", file=path, line=err.lineno) from None
        if not draws:
            return cls.model_validate(doc)
        import xarray as xr

        trees: dict[str, Any] = {}
        for field, pattern in cls.NETCDF.items():
            if "{key}" in pattern:
                prefix, suffix = pattern.split("{key}")
                found = {}
                for nc in sorted(folder.glob(pattern.replace("{key}", "*"))):
                    key = nc.name[len(prefix):len(nc.name) - len(suffix)]
                    with xr.open_datatree(nc, engine="h5netcdf") as tree:
                        found[key] = tree.load()
                trees[field] = found
            else:
                nc = folder / pattern
                if nc.exists():
                    with xr.open_datatree(nc, engine="h5netcdf") as tree:
                        trees[field] = tree.load()
        return cls.model_validate({**doc, **trees})


def quantiles(x: np.ndarray, probs=(0.05, 0.5, 0.95)) -> list[float]:
    return [float(q) for q in np.quantile(np.asarray(x, dtype=float).ravel(), probs)]
