"""Typed configs: frozen dataclasses filled from YAML plus ``key=value`` overrides.

``load_config(SearchConfig, "configs/round1.yaml", ["rollouts=16", "search.c_uct=1.5"])``.
Nested dataclass fields are addressed with dots. Values are parsed as YAML
scalars (``true``, ``1e-5``, ``[1, 2]``) and type-checked against the field.
Unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Sequence, TypeVar

import yaml

from rstar_jax.errors import UserError, one_line

T = TypeVar("T")


class ConfigError(UserError):
    """A config file, key or override that does not fit its dataclass."""


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} not one of {typing.get_args(tp)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return (
            tuple(_coerce(v, inner, where) for v in value)
            if origin is tuple
            else [_coerce(v, inner, where) for v in value]
        )
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp is int and isinstance(value, bool):  # YAML's yes/true: a bool is an int to isinstance
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    types_ = _field_types(cls)
    unknown = set(data) - set(types_)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} for {cls.__name__}; known: {sorted(types_)}")
    values = {k: _coerce(v, types_[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except ValueError as e:  # a dataclass's own validation (__post_init__) of user-given values
        raise ConfigError(f"{where}: {one_line(e)}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def load_config(cls: type[T], path: str | None = None, overrides: Sequence[str] = (), section: str | None = None) -> T:
    """Build ``cls`` from defaults <- YAML file (optionally one section of it) <- overrides."""
    data: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as f:
            try:
                loaded = yaml.safe_load(f) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise ConfigError(f"{path}: not valid YAML ({one_line(e)})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = loaded.get(section, {}) if section else loaded
    base = to_dict(cls()) if _all_defaulted(cls) else {}
    merged = _deep_merge(base, data)
    return from_dict(cls, apply_overrides(merged, overrides), where=path or cls.__name__)


def _all_defaulted(cls) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
    )


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def save_config(cfg: Any, path: str) -> None:
    with open(path, "w") as f:  # the json trip turns tuples into lists YAML can write
        yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), f, sort_keys=False)
