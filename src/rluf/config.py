"""YAML configs validated by pydantic: the one way every command, `rluf run` and the tests build a config.

The pydantic models hold every default. A packaged YAML (src/rluf/configs/) is either an example that
restates defaults (tests/core/test_config.py checks it agrees with the model) or a named set of overrides
(sim_quick.yaml, optimize_guarded.yaml, run.yaml, run_quick.yaml). Unknown, renamed or mistyped keys are
errors naming the key and the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from rluf.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated.

    `renamed_keys` maps a key this section no longer accepts to the key that replaced it, so an old config
    fails with an error that names the new key instead of a bare "unknown key".
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    renamed_keys: ClassVar[dict[str, str]] = {}
    # Dotted keys whose value a validator derives from other keys when left null (a reward model's learning
    # rate from its backbone): load_config re-derives them after overrides unless they were given.
    derived_keys: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _reject_renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for old, new in cls.renamed_keys.items():
                if old in data:
                    raise ValueError(f"'{old}' was renamed to '{new}'")
        return data


def format_validation_error(e: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{loc}' (check the spelling; see the documented fields)")
        elif err["type"] == "value_error" and isinstance(err.get("input"), dict):
            lines.append(f"  - {loc}: {err['msg'].removeprefix('Value error, ')}")
        else:
            value = err.get("input")
            shown = repr(value) if not isinstance(value, dict) else "{...}"
            lines.append(f"  - {loc} = {shown[:80]}: {err['msg']}")
    return "\n".join(lines)


def validate_config(cls: type[T], data: dict[str, Any] | None, *, source: str = "<dict>") -> T:
    """Validate `data` as `cls`; a ValidationError becomes a ConfigError naming fields and `source`."""
    try:
        return cls.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def packaged_names() -> list[str]:
    configs = resources.files("rluf").joinpath("configs")
    return sorted(p.name for p in configs.iterdir() if p.name.endswith(".yaml"))


def packaged_config(name: str) -> Path:
    """The path of a YAML shipped in rluf/configs; a missing one is an error, never an empty config."""
    path = resources.files("rluf").joinpath("configs", name)
    if not path.is_file():
        raise ConfigError(f"no packaged config {name!r}; the packaged configs are {packaged_names()}")
    return Path(str(path))


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` on top; nested mappings merge key by key, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    """`--set KEY=VALUE` strings as {dotted key: value}, the value read as YAML (`crraft.iterations=8`)."""
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. crraft.iterations=8")
        pairs[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return pairs


def nest_overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """Overrides as one nested dict. Top-level keys may be dotted (`crraft.num_candidates`); strings are
    `KEY=VALUE` (parse_set); a top-level None means "not given". Keys inside a nested mapping are taken as
    they are (a sweep run may be called `love_0.1`)."""
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_set(overrides)
    out: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        *parents, leaf = str(key).split(".")
        nested: dict[str, Any] = {leaf: value}
        for p in reversed(parents):
            nested = {p: nested}
        out = deep_merge(out, nested)
    return out


def parse_pairs(values: Sequence[str] | None, option: str, cast=str) -> dict[str, Any]:
    """Repeated `NAME=VALUE` command-line options (`--objective love=DIR`) as a dict."""
    out = {}
    for v in values or []:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} {v!r}: expected NAME=VALUE, e.g. {option} love=runs/x/rewards/love")
        try:
            out[key] = cast(val)
        except ValueError:
            raise ConfigError(f"{option} {v!r}: {val!r} is not a number") from None
    return out


def load_config(cls: type[T], source: str | Path | None = None,
                overrides: Mapping[str, Any] | Sequence[str] | None = None) -> T:
    """`cls` from a YAML file, a packaged config name (`optimize_guarded.yaml`) or nothing (the model's
    defaults), with `overrides` (see nest_overrides) merged on top of the resolved values.

    Overrides merge into the full config, defaults included, so `weights.love=0.3` keeps the other weights
    whether or not the file spells them out.
    """
    if source is None:
        data, label = {}, "<defaults>"
    else:
        path = Path(source)
        if not path.is_file() and len(path.parts) == 1:  # a bare name: a packaged config
            path = packaged_config(path.name)
        data, label = load_yaml(path), str(path)
    over = nest_overrides(overrides)
    if not over:
        return validate_config(cls, data, source=label)
    base = validate_config(cls, data, source=label).model_dump()
    for dotted in getattr(cls, "derived_keys", ()):
        *parents, leaf = dotted.split(".")
        given, filled = data, base
        for p in parents:
            given, filled = (given or {}).get(p) or {}, filled.get(p) or {}
        if leaf not in given:
            filled[leaf] = None
    return validate_config(cls, deep_merge(base, over), source=f"{label} with overrides {over}")
