"""The main job's configuration: a YAML file validated by pydantic models that forbid unknown keys.

``analyses/default_config.yaml`` is the bundled configuration that reproduces the main job; every key is
documented there. A user's file need only hold the keys it changes: it is merged over the defaults
(mappings merge key by key, lists and scalars replace), then validated as a whole. Any mistake (an unknown
key, a value of the wrong type or out of range, an inconsistent pair such as ``design.n_max < design.n_min``)
raises :class:`~isletbayes.data.errors.InputError` naming the file and the dotted key, which the CLI prints as
one line with exit status 2.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from isletbayes.data.errors import InputError

DEFAULT_CONFIG_NAME = "default_config.yaml"

PanelMember = Literal["uniform", "jeffreys", "sceptical", "enthusiastic", "map", "robust_map"]
BinaryEndpoint = Literal["insulin_independence", "composite_primary", "she_free", "hba1c_below_7"]


class Strict(BaseModel):
    """Base of every configuration block: unknown keys are errors, values are not coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=True)


class SectionsConfig(Strict):
    """Which parts of the re-analysis run (a section switched off is left out of the report)."""

    binary: bool = True
    cpeptide: bool = True
    safety: bool = True
    design: bool = True
    durability: bool = True


class DataConfig(Strict):
    """Input files; ``null`` means the bundled published data."""

    counts: Path | None = None
    cpeptide_means: Path | None = None
    comparators: Path | None = None
    participant_data: Path | None = None
    include_unverified: bool = False


class MapPriorConfig(Strict):
    """Meta-analytic-predictive prior from the comparator studies (logit-normal random effects)."""

    studies: Literal["default"] | list[str] = "default"
    tau_prior: Literal["halfnormal", "halfcauchy", "halft"] = "halfnormal"
    tau_scale: float = Field(default=1.0, gt=0.0)
    mu_prior_sd: float = Field(default=2.0, gt=0.0)
    robust_weight: float = Field(default=0.2, ge=0.0, le=1.0)

    @field_validator("studies")
    @classmethod
    def _nonempty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("name at least one comparator study, or write 'default'")
        return v


class PriorsConfig(Strict):
    """The prior panel under which the binary end points are analysed side by side."""

    panel: list[PanelMember] = Field(
        default_factory=lambda: ["uniform", "jeffreys", "sceptical", "enthusiastic", "map", "robust_map"])
    map: MapPriorConfig = MapPriorConfig()

    @field_validator("panel")
    @classmethod
    def _panel_ok(cls, v):
        if not v:
            raise ValueError("must name at least one prior")
        if len(set(v)) != len(v):
            raise ValueError("lists a prior twice")
        return v


class BinaryConfig(Strict):
    endpoints: list[BinaryEndpoint] = Field(
        default_factory=lambda: ["insulin_independence", "composite_primary", "she_free", "hba1c_below_7"])
    thresholds: list[float | Literal["comparator"]] = Field(default_factory=lambda: [0.5, "comparator"])
    predictive_m: int = Field(default=50, ge=1, le=10000)

    @field_validator("endpoints")
    @classmethod
    def _endpoints_ok(cls, v):
        if not v:
            raise ValueError("must name at least one end point")
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds_ok(cls, v):
        for t in v:
            if not isinstance(t, str) and not 0 < t < 1:
                raise ValueError(f"a threshold must lie strictly between 0 and 1, got {t:g}")
        return v


class TrajectoryPriorsConfig(Strict):
    """Priors of the C-peptide trajectory model (isletbayes.models.cpeptide_trajectory.TrajectoryPriors)."""

    plateau_median_pmol_l: float = Field(default=1000.0, gt=0.0)
    plateau_log_sd: float = Field(default=1.0, gt=0.0)
    t_half_median_days: float = Field(default=60.0, gt=0.0)
    t_half_log_sd: float = Field(default=1.0, gt=0.0)
    spread_plateau_scale: float = Field(default=0.5, gt=0.0)
    spread_rate_scale: float = Field(default=0.5, gt=0.0)
    measurement_sd_scale: float = Field(default=0.5, gt=0.0)
    decline_rate_scale_per_year: float = Field(default=0.2, gt=0.0)
    decline_start_day: float = Field(default=365.0, gt=0.0)
    rise_shape_log_sd: float = Field(default=0.5, gt=0.0)


class LinkPriorsConfig(Strict):
    """Normal priors of the graft-function link (isletbayes.models.graft_link.LinkPriors)."""

    alpha_mean: float = 0.0
    alpha_sd: float = Field(default=1.5, gt=0.0)
    beta_mean: float = 1.0
    beta_sd: float = Field(default=1.0, gt=0.0)


class CpeptideConfig(Strict):
    """The C-peptide trajectory and graft-function analysis (isletbayes.analyses.cpeptide.run_cpeptide)."""

    link: bool = True
    sensitivity: bool = False
    psense: bool = True
    late_decline: bool = False
    rise_shape: bool = True
    target_accept: float | None = Field(default=0.99, gt=0.5, lt=1.0)
    priors: TrajectoryPriorsConfig = TrajectoryPriorsConfig()
    link_priors: LinkPriorsConfig = LinkPriorsConfig()


class DesignConfig(Strict):
    """Phase 3 planning over a grid of sample sizes: exact enumeration for binary end points (the keys are the
    options of ``isletbayes design``; see :func:`isletbayes.analyses.design.run_design`)."""

    endpoint: Literal["insulin_independence", "composite_primary"] = "insulin_independence"
    rule: Literal["bayes", "binomial"] = "bayes"
    p0: float = Field(default=0.44, gt=0.0, lt=1.0)
    p1: float = Field(default=0.70, gt=0.0, lt=1.0)
    gamma: float = Field(default=0.975, gt=0.0, lt=1.0)
    alpha: float = Field(default=0.025, gt=0.0, lt=1.0)
    design_prior: str = "phase12"
    discount_ess: float | None = Field(default=None, gt=0.0)
    design_robust: float = Field(default=0.0, ge=0.0, lt=1.0)
    analysis_prior: str = "uniform"
    n_min: int = Field(default=20, ge=1)
    n_max: int = Field(default=100, ge=1, le=5000)
    n_step: int = Field(default=1, ge=1)
    power_target: float = Field(default=0.8, gt=0.0, lt=1.0)
    assurance_target: float = Field(default=0.8, gt=0.0, lt=1.0)
    interim: list[float] | None = None
    futility: float = Field(default=0.05, ge=0.0, lt=1.0)

    @field_validator("n_max")
    @classmethod
    def _n_max_ge_n_min(cls, v: int, info: ValidationInfo) -> int:
        n_min = info.data.get("n_min")
        if n_min is not None and v < n_min:
            raise ValueError(f"must be >= design.n_min ({n_min})")
        return v

    @field_validator("interim")
    @classmethod
    def _fractions(cls, v):
        if v is not None and any(not 0 < f < 1 for f in v):
            raise ValueError("interim looks are fractions of n strictly between 0 and 1")
        return v


class DurabilityConfig(Strict):
    n_draws: int = Field(default=20000, ge=100)


class SamplerConfig(Strict):
    """NUTS settings for every MCMC fit (see isletbayes.models.sampling.SamplerSettings)."""

    draws: int = Field(default=1000, ge=10)
    tune: int = Field(default=1000, ge=10)
    chains: int = Field(default=4, ge=1, le=64)
    cores: int = Field(default=1, ge=1)
    target_accept: float = Field(default=0.95, gt=0.5, lt=1.0)
    nuts_sampler: Literal["pymc", "nutpie"] = "nutpie"


class MainJobConfig(Strict):
    seed: int = Field(default=20250620, ge=0, lt=2**32)
    sections: SectionsConfig = SectionsConfig()
    data: DataConfig = DataConfig()
    priors: PriorsConfig = PriorsConfig()
    binary: BinaryConfig = BinaryConfig()
    cpeptide: CpeptideConfig = CpeptideConfig()
    design: DesignConfig = DesignConfig()
    durability: DurabilityConfig = DurabilityConfig()
    sampler: SamplerConfig = SamplerConfig()


# --- loading ----------------------------------------------------------------------------------------------


def default_config_path() -> Path:
    return Path(str(resources.files("isletbayes.analyses") / DEFAULT_CONFIG_NAME))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("configuration file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read configuration ({err})", file=path) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(
            f"not valid YAML: {problem}" + (f" (column {mark.column + 1})" if mark else ""),
            file=path, line=(mark.line + 1) if mark else None) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"the top level must be a mapping of keys, not a {type(doc).__name__}", file=path)
    return doc


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _first_error(err: ValidationError) -> tuple[str, str]:
    first = err.errors(include_url=False)[0]
    key = ".".join(str(p) for p in first["loc"])
    kind, msg = first["type"], first["msg"]
    if kind == "extra_forbidden":
        msg = "unknown key (check its spelling; see analyses/default_config.yaml for every key)"
    elif kind == "literal_error":
        msg = msg.replace("Input should be", "must be one of")
    msg = msg.removeprefix("Value error, ")
    if "input" in first and kind not in ("extra_forbidden", "missing"):
        msg += f" (got {first['input']!r})"
    return key, msg


def config_from_dict(doc: dict[str, Any], *, source: str | Path | None = None,
                     base: dict[str, Any] | None = None) -> MainJobConfig:
    """Validate ``doc`` merged over ``base`` (default: the bundled defaults); raise InputError naming the key."""
    merged = _merge(base if base is not None else _read_yaml(default_config_path()), doc)
    try:
        config = MainJobConfig.model_validate(merged)
    except ValidationError as err:
        key, msg = _first_error(err)
        raise InputError(msg, file=source, key=key or "(top level)") from None
    # relative data paths in a user's file are relative to that file
    if source is not None:
        base_dir = Path(source).resolve().parent
        updates = {name: (base_dir / p) for name, p in config.data.model_dump().items()
                   if isinstance(p, Path) and not p.is_absolute()}
        if updates:
            config = config.model_copy(update={"data": config.data.model_copy(update=updates)})
    return config


def load_config(path: str | Path | None = None) -> MainJobConfig:
    """The bundled default configuration, or ``path`` merged over it."""
    if path is None:
        return config_from_dict({}, source=None)
    path = Path(path)
    return config_from_dict(_read_yaml(path), source=path)


def config_to_dict(config: MainJobConfig) -> dict[str, Any]:
    """A plain, JSON-ready dict of the full configuration (what results and provenance record)."""
    return config.model_dump(mode="json")
