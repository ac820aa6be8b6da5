"""How settings' values are spelled and checked (:mod:`scaler.config` declares the settings):
booleans in Go's and common spellings, Go durations and prefixed integers as kedify/otel-add-on
reads its variables, and the constrained types the setting fields use."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field


def parse_bool(text: str) -> bool:
    """``true``/``false`` and Go's ``strconv.ParseBool`` spellings (``1``, ``t``, ``T``, ``TRUE``,
    ``True``; ``0``, ``f``, ...), plus ``yes``/``no``/``on``/``off``; empty is false."""
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true", "yes", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """A Go ``time.ParseDuration`` string (``5m``, ``1h30m``, ``1.5s``, ``300ms``, ``0``) in seconds."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body):
        match = _GO_DURATION.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            raise ValueError(f"{text!r} is not a Go duration (e.g. 5m, 15s, 1h30m)")
        total += float(match.group(1)) * _GO_UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not body:
        raise ValueError(f"{text!r} is not a Go duration (e.g. 5m, 15s, 1h30m)")
    return sign * total


def _bool(value: object) -> object:
    return parse_bool(value) if isinstance(value, str) else value


def lower(value: object) -> object:
    """A string stripped and in lower case (for the choice settings)."""
    return value.strip().lower() if isinstance(value, str) else value


def label_name_or_off(text: str) -> str:
    """A label name usable for a generated label, or ``-``/empty for "off"."""
    text = text.strip()
    if text not in ("", "-") and (text.startswith("__") or any(c in text for c in '=,{}"\n')):
        raise ValueError(f"{text!r} is not a usable label name")
    return text


def _go_int(value: object) -> object:
    """A prefixed integer literal (``0x78``, ``0o170``, ``0b1111000``, ``1_000``) as Go's
    ``strconv.ParseInt(s, 0, 64)`` reads kedify/otel-add-on's integer variables; else as given."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?0[xXoObB][0-9a-fA-F_]+\s*|\s*[+-]?[0-9]+(_[0-9]+)+\s*", value):
        try:
            return int(value.strip(), 0)
        except ValueError:
            return value
    return value


def _optional_bool(value: object) -> object:
    """Unset (None) when empty, else a boolean: for a switch whose absence means "decide by the
    other settings"."""
    if isinstance(value, str):
        return None if not value.strip() else parse_bool(value)
    return value


Port = Annotated[int, BeforeValidator(_go_int), Field(ge=0, le=65535)]
Count = Annotated[int, Field(gt=0)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
GoSeconds = Annotated[float, BeforeValidator(_go_int), Field(gt=0, allow_inf_nan=False)]
Milliseconds = Annotated[
    Annotated[int, BeforeValidator(_go_int), Field(gt=0)] | None,
    BeforeValidator(lambda v: None if isinstance(v, str) and not v.strip() else v),
]
SecondsOrOff = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Number = Annotated[float, Field(allow_inf_nan=False)]
Switch = Annotated[bool, BeforeValidator(_bool)]
OptionalSwitch = Annotated[bool | None, BeforeValidator(_optional_bool)]
