"""Measures the data layer knows, their canonical units, conversions into them, and the bounds on every value.

Every conversion is affine, canonical = scale * value + offset. A level (a concentration, a mean, a single
reading) takes both terms; a difference (a change from baseline) takes only the scale.

C-peptide: 1 ng/mL = 1 ug/L = 1e-6 g/L / 3020.3 g/mol = 331.1 pmol/L (molar mass of human C-peptide,
3020.3 g/mol); 1 nmol/L = 1000 pmol/L.
HbA1c: the IFCC-NGSP master equation, IFCC (mmol/mol) = 10.929 * (NGSP (%) - 2.15), so
% = mmol/mol / 10.929 + 2.15.
A unit that is not listed for its measure is refused, never guessed.

Two kinds of bound, both defined in this module and nowhere else:

* **Hard limits** say what a value cannot be: a negative concentration, a percentage above 100, a binary
  measure other than 0/1 (``Measure.minimum``/``maximum``), a day after infusion beyond
  :data:`MAX_DAY`, a count or denominator above :data:`MAX_COUNT`. They protect the arithmetic (no
  overflow, no infinity) as much as the science, and no option lifts them.
* **Plausibility bounds** (:data:`PLAUSIBLE`) say what a value is very unlikely to be in this setting
  (adults with type 1 diabetes followed after an islet-cell infusion): a stimulated C-peptide of 50 nmol/L,
  an HbA1c of 40%, 800 U/day of insulin, a visit 40 years after infusion. Most such values are a slip (a
  unit mix-up, a decimal point, a fraction typed for a percentage). The loaders refuse them with file, line
  and column, naming the bound and its reason; a deliberate outlier is kept by loading with
  ``allow_outliers=True`` (command line: ``--allow-outliers``), which accepts it, records it in the
  frame's ``attrs['outliers']`` and emits one :class:`~isletbayes.data.errors.ImplausibleValueWarning`
  per file.

Plausibility bounds are checked on the canonical value (after unit conversion), so a C-peptide typed in
pmol/L but labelled nmol/L (x1000) is caught whatever the unit column says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CPEPTIDE_MOLAR_MASS_G_PER_MOL = 3020.3
# 1 ng/mL = 1e-6 g/L; / 3020.3 g/mol = 3.311e-10 mol/L = 331.1 pmol/L (rounded as in clinical practice)
PMOL_L_PER_NG_ML = round(1e-6 / CPEPTIDE_MOLAR_MASS_G_PER_MOL * 1e12, 1)


@dataclass(frozen=True)
class Measure:
    """A measure, its canonical unit, the units converted into it and the hard limits of its levels.

    ``minimum``/``maximum`` are hard limits (what a level cannot be, in the canonical unit); the softer
    plausibility bounds are in :data:`PLAUSIBLE`.
    """

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
                {**_POINTS, "mmol/mol": 1 / 10.929}, minimum=0.0, maximum=100.0),  # a share of haemoglobin
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


# ------------------------------------------------------------------------------------------------ bounds

#: Hard limit on a day after infusion (and on any ``day``/``timepoint_day`` column): 100 years. No follow-up
#: of a living participant reaches it, and it keeps every day an exact int64 and float64 (a day of 1e20 is
#: refused here instead of overflowing later).
MAX_DAY = 36_525

#: Hard limit on a count and its denominator (``r``, ``n`` of every file): ten million. About 8.4 million
#: people lived with type 1 diabetes worldwide in 2021 (T1D Index; Gregory GA, et al. Lancet Diabetes
#: Endocrinol 2022;10:741-760), so no cohort, trial or registry of this field can be larger; and exact
#: binomial arithmetic on it stays within int64 and float64.
MAX_COUNT = 10_000_000

#: How a user keeps a value outside a plausibility bound (named in every message that refuses one).
OVERRIDE_HINT = "if the value is real, load with allow_outliers=True (command line: --allow-outliers)"


@dataclass(frozen=True)
class PlausibleRange:
    """A plausibility bound: values outside [low, high] (canonical unit) are refused unless outliers are allowed.

    ``reason`` is the short why, shown in the message; the comment at each bound in :data:`PLAUSIBLE` gives
    its source.
    """

    low: float | None
    high: float | None
    unit: str
    reason: str

    def problem(self, name: str, value: float, given: str = "") -> str | None:
        """The refusal message for ``value`` (canonical unit) of ``name``, or None when it is plausible.

        ``given`` describes the value as written when it was converted (e.g. ``"1300 nmol/L"``).
        """
        shown = with_unit(value, self.unit) + (f" (given as {given})" if given else "")
        if self.low is not None and value < self.low:
            side, bound = "below the plausible minimum", self.low
        elif self.high is not None and value > self.high:
            side, bound = "above the plausible maximum", self.high
        else:
            return None
        return f"{name} {shown} is {side} of {with_unit(bound, self.unit)} ({self.reason}); {OVERRIDE_HINT}"


def with_unit(value: float, unit: str) -> str:
    """``7.8%``, ``1274 pmol/L``, ``12000``: a number with its unit as written in messages."""
    return f"{value:g}" + ("" if not unit else unit if unit == "%" else f" {unit}")


#: The plausibility bounds, by measure name (participant format and summary files) and by the participant
#: columns ``day`` and ``dose``. Measures not listed have only hard limits: ``tir_70_180`` (0-100%: every
#: value in it occurs), ``insulin_independent`` and ``off_insulin`` (0/1).
PLAUSIBLE: dict[str, PlausibleRange] = {
    # Clinical laboratories give fasting reference ranges of about 0.5-2 ng/mL (0.17-0.66 nmol/L) and
    # meal-stimulated C-peptide is a few times the fasting value (review: Leighton E, et al. Diabetes Ther
    # 2017, doi:10.1007/s13300-017-0265-4); zimislecel's day-365 stimulated mean was 1.27 nmol/L. 10 nmol/L
    # is several times any physiological response; above it the usual cause is pmol/L typed under a nmol/L
    # label (x1000).
    "cpeptide": PlausibleRange(None, 10_000.0, "pmol/L",
                               "several times the highest meal-stimulated C-peptide of healthy adults; often "
                               "a pmol/L value labelled nmol/L"),
    # Fasting: half the stimulated bound (same source); renal failure raises fasting C-peptide, hence the margin.
    "cpeptide_fasting": PlausibleRange(None, 5_000.0, "pmol/L",
                                       "several times the highest fasting C-peptide of healthy adults; often a "
                                       "pmol/L value labelled nmol/L"),
    # HbA1c: people without diabetes are at about 4-5.6%; below 3% occurs only with markedly shortened
    # red-cell survival, and a % value typed under a mmol/mol label lands there (7 mmol/mol = 2.8%).
    # Values above about 20% are exceptional even at diagnosis; 25% is the bound isletbayes has always had,
    # and a mmol/mol value typed under a % label lands above it (53 "%").
    "hba1c": PlausibleRange(3.0, 25.0, "%", "HbA1c outside it is exceptional; often a unit mix-up between % "
                                            "and mmol/mol"),
    # Glucose CV from CGM: about 15-20% without diabetes, rarely above 50-60% in type 1 diabetes; readings
    # confined to the sensor range 40-400 mg/dL cannot give a CV much above 140%. Below 5% (a nearly flat
    # trace over days) is usually a fraction typed for a percentage (0.36 for 36%).
    "glucose_cv": PlausibleRange(5.0, 100.0, "%", "CGM glucose CV lies far inside it; often a fraction "
                                                  "typed for a percentage"),
    # Total daily insulin in type 1 diabetes is about 0.4-1 U/kg/day (30-100 U/day for most adults; the
    # phase 1/2 baseline range was 19.8-52.0 U/day); 500 U/day is 5 U/kg/day at 100 kg, the range of severe
    # insulin resistance, not of a trial of islet replacement.
    "insulin_dose": PlausibleRange(None, 500.0, "U/day", "about 5 U/kg/day, far above doses in type 1 "
                                                         "diabetes"),
    # Severe hypoglycaemic events between two visits (at most a year apart): trial candidates have had >=2
    # in the year before enrolment, a handful of people report dozens; 100 is two a week for a year.
    "she_count": PlausibleRange(None, 100.0, "events", "two a week for a year between visits"),
    # Days after infusion: the longest published follow-up of islet transplantation is about 20 years
    # (Marfil-Garza BA, et al. Lancet Diabetes Endocrinol 2022); 30 years is beyond any study of cell therapy.
    "day": PlausibleRange(None, 10_958.0, "", "30 years after infusion, beyond any follow-up of islet or "
                                              "stem-cell therapy"),
    # Cells infused, in 10^9: zimislecel's full dose is 0.8; deceased-donor islet infusions are of the same
    # order. Above 10 (12 times the full dose) the usual cause is cells or millions of cells typed for 10^9.
    "dose": PlausibleRange(None, 10.0, "x10^9 cells", "12 times zimislecel's full dose of 0.8; often cells "
                                                      "or millions of cells typed for 10^9"),
}
