"""Command-line options built from the configuration models, so that a default, a bound or a choice is written
once (in :mod:`isletbayes.analyses.config`) and every door reads it from there.

:func:`options_for` turns configuration keys (a whole block such as ``"design"``, or one field such as
``"data.participant_data"``) into :class:`ConfigOption` s: the option's flags come from the field's name
(``n_min`` -> ``--n-min``) unless the field names its own (``option=`` in :func:`~isletbayes.analyses.config.setting`),
its default is the field's default, its help the field's description (with the allowed words). Bounds are not
repeated here: the values a user gives are validated by the same pydantic models that validate a YAML file
(:func:`config_from_options`), and a problem is reported naming the option.

:func:`config_command` wraps a command body so that typer sees one keyword option per configuration field and
the body receives the validated :class:`~isletbayes.analyses.config.MainJobConfig`.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError

from isletbayes.analyses.config import Block, MainJobConfig, choices, validation_problem
from isletbayes.data.errors import InputError


@dataclass(frozen=True)
class ConfigOption:
    """One command-line option that sets one configuration key."""

    key: str  # dotted configuration key, e.g. "design.n_min"
    param: str  # the Python parameter name typer passes the value as
    flags: tuple[str, ...]  # e.g. ("--n-min",) or ("--rise-shape/--exponential-rise",)
    kind: str  # "flag", "scalar", "list"
    annotation: Any  # the type typer converts the text to
    default: Any  # the configuration's default, as the option's default
    help: str

    @property
    def primary(self) -> str:
        """The option's name as a user types it (the 'on' form of a flag)."""
        return self.flags[0].split("/")[0]

    def parameter(self) -> inspect.Parameter:
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, annotation=self.annotation,
                                 default=typer.Option(self.default, *self.flags, help=self.help,
                                                      show_default=True))


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _leaf_fields(block: type[Block], prefix: str):
    for name, field in block.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Block):
            yield from _leaf_fields(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", name, field


def _field_at(key: str):
    """(field name, pydantic FieldInfo, owning block) of a dotted key, or the block type for a block key."""
    block: type[BaseModel] = MainJobConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part not in block.model_fields:
            raise KeyError(key)
        field = block.model_fields[part]
        if i == len(parts) - 1:
            return part, field, block
        block = field.annotation


def _option(key: str, name: str, field) -> ConfigOption:
    annotation, optional = _unwrap_optional(field.annotation)
    extra = field.json_schema_extra or {}
    flag = extra.get("option") or "--" + name.replace("_", "-")
    default = field.get_default(call_default_factory=True)
    words = choices(annotation)
    help_text = (field.description or "") + (f" (one of: {', '.join(words)})" if words else "")
    help_text += f" (configuration key {key})"
    param = key.replace(".", "__")
    if annotation is bool:
        flags = (flag,) if "/" in flag else (f"{flag}/--no-{flag[2:]}",)
        return ConfigOption(key, param, flags, "flag", bool, default, help_text)
    origin = get_origin(annotation)
    if origin is dict:  # name -> block of numbers: "NAME=v1,v2" per value, in the block's field order
        fields = list(get_args(annotation)[1].model_fields)
        return ConfigOption(key, param, (flag,), "mapping", list[str], [], help_text +
                            f" (repeatable: NAME={','.join(f.upper() for f in fields)})")
    is_list = origin is list or (get_origin(annotation) in (Union, types.UnionType)
                                 and any(get_origin(a) is list for a in get_args(annotation)))
    if is_list:
        default_list = [str(v) for v in default] if isinstance(default, list) else (
            None if default is None else [str(default)])
        return ConfigOption(key, param, (flag,), "list", list[str] | None if default_list is None else list[str],
                            default_list, help_text + " (repeat the option, or separate values with commas)")
    scalar = {int: int, float: float}.get(annotation, Path if annotation is Path else str)
    if get_origin(annotation) is Literal:
        scalar = str
    typ = scalar | None if (optional or default is None) else scalar
    return ConfigOption(key, param, (flag,), "scalar", typ, default, help_text)


def options_for(*keys: str) -> list[ConfigOption]:
    """The options setting the given configuration keys (a block key selects every field beneath it)."""
    out: list[ConfigOption] = []
    for key in keys:
        name, field, _ = _field_at(key)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Block):
            out += [_option(k, n, f) for k, n, f in _leaf_fields(annotation, f"{key}.")]
        else:
            out.append(_option(key, name, field))
    flags = [o.primary for o in out]
    duplicated = {f for f in flags if flags.count(f) > 1}
    if duplicated:
        raise RuntimeError(f"two configuration keys claim the same option: {sorted(duplicated)}")
    return out


def _set(doc: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        doc = doc.setdefault(part, {})
    doc[parts[-1]] = value


def _list_value(option: ConfigOption, values: list[str] | None) -> Any:
    if values is None:
        return None
    if option.key in ("priors.map.studies", "priors.map.group_studies"):  # study names hold commas: one per value
        names = [v.strip() for v in values if v.strip()]
        return "default" if names == ["default"] else names
    items = [piece.strip() for v in values for piece in str(v).split(",") if piece.strip()]
    return items


def _mapping_value(option: ConfigOption, values: list[str]) -> dict[str, Any]:
    _, field, _ = _field_at(option.key)
    names = list(get_args(field.annotation)[1].model_fields)
    out: dict[str, Any] = {}
    for text in values or []:
        name, sep, rest = str(text).partition("=")
        parts = [p.strip() for p in rest.split(",")]
        if not sep or not name.strip() or len(parts) != len(names):
            raise InputError(f"expected NAME={','.join(n.upper() for n in names)}, got {text!r}", key=option.key)
        out[name.strip()] = dict(zip(names, parts))
    return out


def config_from_options(options: Sequence[ConfigOption], values: dict[str, Any]) -> MainJobConfig:
    """The configuration with each option's value set at its key, validated; a problem names the option."""
    doc: dict[str, Any] = {}
    for option in options:
        value = values[option.param]
        if option.kind == "list":
            value = _list_value(option, value)
        elif option.kind == "mapping":
            value = _mapping_value(option, value)
        if isinstance(value, Path):
            value = str(value)
        _set(doc, option.key, value)
    try:
        return MainJobConfig.model_validate(doc)
    except ValidationError as err:
        key, message = validation_problem(err)
        raise InputError(message, key=key) from None


def key_to_option(err: InputError, options: Sequence[ConfigOption]) -> InputError:
    """The same error naming the option that sets its configuration key (the door the user used)."""
    if err.key is None:
        return err
    by_key = {o.key: o.primary for o in options}
    parts = err.key.split(".")
    while parts and ".".join(parts) not in by_key:
        parts.pop()  # 'design.interim.1' is set by the option of 'design.interim'
    if parts:
        option = by_key[".".join(parts)]
    else:  # a block's own check ('design', 'design.estimand'): the option its message is about
        inside = [o for o in options if o.key.startswith(err.key + ".")]
        named = [o for o in inside if o.key in err.message or o.key.rsplit(".", 1)[-1] in err.message]
        if not named:
            return err
        option = max(named, key=lambda o: len(o.key.rsplit(".", 1)[-1])).primary
    message = err.message
    for key, flag in sorted(by_key.items(), key=lambda kv: -len(kv[0])):
        # a key named as a word, not as part of a longer key, and not where a message shows YAML ('key: value')
        message = re.sub(rf"(?<![\w.-]){re.escape(key)}(?![\w.]|: )", flag, message)
    return InputError(message, file=err.file, line=err.line, column=err.column, option=option)


def config_command(keys: Sequence[str], extra: Sequence[inspect.Parameter] = ()) -> Callable:
    """Decorator: the command takes one option per configuration field under ``keys`` plus ``extra``
    parameters; the body is called as ``body(config, **extra_values)`` with the validated configuration, and
    an InputError naming a configuration key is re-raised naming the option."""
    options = options_for(*keys)

    def wrap(body: Callable) -> Callable:
        @functools.wraps(body)
        def command(**kwargs: Any) -> Any:
            values = {o.param: kwargs.pop(o.param) for o in options}
            try:
                config = config_from_options(options, values)
                return body(config, **kwargs)
            except InputError as err:
                raise key_to_option(err, options) from None

        command.__signature__ = inspect.Signature([o.parameter() for o in options] + list(extra))
        command.config_options = options  # what tests and the help-text check read
        del command.__wrapped__  # typer must read __signature__, not the body's own
        return command

    return wrap


def extra_option(name: str, annotation: Any, default: Any, *flags: str, help: str = "") -> inspect.Parameter:
    """A command option that is not a configuration key (--out, --json, ...)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *flags, help=help))
