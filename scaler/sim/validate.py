"""Strict reading of YAML mappings: every error names the key path, unknown keys are errors."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class SpecError(ValueError):
    """A YAML document is invalid; the message names the file and the key."""


def mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
    return data


def strict(data: Mapping[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def required(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise SpecError(f"{where}: missing key {key!r}")
    return data[key]


def number(
    data: Mapping[str, Any], key: str, where: str, default: float | None = None, positive: bool = False
) -> float:
    raw = data.get(key, default) if default is not None else required(data, key, where)
    if isinstance(raw, bool):
        raise SpecError(f"{where}.{key}: {raw!r} is not a number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SpecError(f"{where}.{key}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise SpecError(f"{where}.{key}: {raw!r} must be {'> 0' if positive else '>= 0'}")
    return value


def integer(data: Mapping[str, Any], key: str, where: str, default: int | None = None, positive: bool = False) -> int:
    value = number(data, key, where, None if default is None else float(default), positive)
    if value != int(value):
        raise SpecError(f"{where}.{key}: {data.get(key)!r} must be a whole number")
    return int(value)


def fraction(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = number(data, key, where, default)
    if value > 1:
        raise SpecError(f"{where}.{key}: {value!r} must be between 0 and 1")
    return value


def text(data: Mapping[str, Any], key: str, default: str = "") -> str:
    return " ".join(str(data.get(key, default)).split())
