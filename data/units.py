"""Measures the data layer knows, their canonical units, and conversions into them.

Every conversion is affine, canonical = scale * value + offset. A level (a concentration, a mean, a single
reading) takes both terms; a difference (a change from baseline) takes only the scale.

C-peptide: 1 ng/mL = 1 ug/L = 1e-6 g/L / 3020.3 g/mol = 331.1 pmol/L (molar mass of human C-peptide,
3020.3 g/mol); 1 nmol/L = 1000 pmol/L.
HbA1c: the IFCC-NGSP master equation, IFCC (mmol/mol) = 10.929 * (NGSP (%) - 2.15), so
% = mmol/mol / 10.929 + 2.15.
A unit that is not listed for its measure is refused, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CPEPTIDE_MOLAR_MASS_G_PER_MOL = 3020.3
# 1 ng/mL = 1e-6 g/L; / 3020.3 g/mol = 3.311e-10 mol/L = 331.1 pmol/L (rounded as in clinical practice)
PMOL_L_PER_NG_ML = round(1e-6 / CPEPTIDE_MOLAR_MASS_G_PER_MOL * 1e12, 1)


@dataclass(frozen=True)
class Measure:
    """A measure, its canonical unit, the units converted into it and the range its levels may take."""

    name: str
    canonical_unit: str
    description: str
    units: dict[str, tuple[float, float]]  # unit (matched case-insensitively) -> (scale, offset) into canonical
    change_units: dict[str, float] = field(default_factory=dict)  # unit of a difference -> scale
    minimum: float | None = 0.0
    maximum: float | None = None
    binary: bool = False
    censorable: bool = False  # may be reported below a limit of detection

    def has_unit(self, unit: str, *, change: bool = False) -> bool:
        table = self.change_units if change else self.units
        return normalise_unit(unit) in {normalise_unit(u) for u in table}

    def level_to_canonical(self, value: float, unit: str) -> float:
        scale, offset = {normalise_unit(u): c for u, c in self.units.items()}[normalise_unit(unit)]
        return scale * value + offset

    def change_to_canonical(self, value: float, unit: str) -> float:
        return {normalise_unit(u): c for u, c in self.change_units.items()}[normalise_unit(unit)] * value


def normalise_unit(unit: str) -> str:
    return " ".join(unit.strip().lower().replace("μ", "u").replace("µ", "u").split())


_CPEPTIDE_UNITS = {"pmol/L": (1.0, 0.0), "pM": (1.0, 0.0), "nmol/L": (1000.0, 0.0),
                   "ng/mL": (PMOL_L_PER_NG_ML, 0.0), "ug/L": (PMOL_L_PER_NG_ML, 0.0)}
_PERCENT = {"%": (1.0, 0.0), "percent": (1.0, 0.0)}
_POINTS = {"percentage points": 1.0, "percentage point": 1.0, "pp": 1.0, "%": 1.0, "percent": 1.0}
_BINARY = {"": (1.0, 0.0), "binary": (1.0, 0.0), "0/1": (1.0, 0.0), "1": (1.0, 0.0)}

MEASURES: dict[str, Measure] = {
    m.name: m
    for m in [
        Measure("cpeptide", "pmol/L", "serum C-peptide, MMTT-stimulated (90 min unless your data say otherwise)",
                _CPEPTIDE_UNITS, {u: s for u, (s, _) in _CPEPTIDE_UNITS.items()}, censorable=True),
        Measure("cpeptide_fasting", "pmol/L", "fasting serum C-peptide", _CPEPTIDE_UNITS,
                {u: s for u, (s, _) in _CPEPTIDE_UNITS.items()}, censorable=True),
        Measure("hba1c", "%", "glycated haemoglobin (NGSP %)",
                {**_PERCENT, "mmol/mol": (1 / 10.929, 2.15)},
                {**_POINTS, "mmol/mol": 1 / 10.929}, minimum=0.0, maximum=25.0),
        Measure("tir_70_180", "%", "CGM time in range 70-180 mg/dL (3.9-10 mmol/L)", _PERCENT, _POINTS,
                maximum=100.0),
        Measure("glucose_cv", "%", "CGM glucose coefficient of variation", _PERCENT, _POINTS),
        Measure("insulin_dose", "U/day", "total daily exogenous insulin dose",
                {"U/day": (1.0, 0.0), "IU/day": (1.0, 0.0), "units/day": (1.0, 0.0)},
                {"U/day": 1.0, "IU/day": 1.0, "units/day": 1.0}),
        Measure("insulin_independent", "", "insulin independent at this visit (1) or not (0)", _BINARY,
                binary=True, maximum=1.0),
        Measure("off_insulin", "", "using no exogenous insulin at this visit (1) or using it (0)", _BINARY,
                binary=True, maximum=1.0),
        Measure("she_count", "events", "severe hypoglycaemic events since the previous visit",
                {"events": (1.0, 0.0), "count": (1.0, 0.0), "": (1.0, 0.0)}),
    ]
}


def known_units(measure: Measure, *, change: bool = False) -> str:
    names = measure.change_units if change else measure.units
    return ", ".join(repr(u) for u in names) or "(none)"
