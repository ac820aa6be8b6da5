"""PromQL tokens: their types, how Prometheus names them in error messages, and Go-style
quoting helpers shared by the lexer, parser and printer."""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass


class T(enum.Enum):
    """Token types. The value is the text Prometheus uses when describing the token."""

    EOF = "end of input"
    IDENTIFIER = "identifier"
    METRIC_IDENTIFIER = "metric identifier"
    NUMBER = "number"
    DURATION = "duration"
    STRING = "string"
    LEFT_PAREN = "("
    RIGHT_PAREN = ")"
    LEFT_BRACE = "{"
    RIGHT_BRACE = "}"
    LEFT_BRACKET = "["
    RIGHT_BRACKET = "]"
    COMMA = ","
    EQL = "="
    COLON = ":"
    # operators
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    MOD = "%"
    POW = "^"
    EQLC = "=="
    NEQ = "!="
    LTE = "<="
    LSS = "<"
    GTE = ">="
    GTR = ">"
    EQL_REGEX = "=~"
    NEQ_REGEX = "!~"
    LAND = "and"
    LOR = "or"
    LUNLESS = "unless"
    ATAN2 = "atan2"
    AT = "@"
    # aggregators
    SUM = "sum"
    AVG = "avg"
    COUNT = "count"
    MIN = "min"
    MAX = "max"
    GROUP = "group"
    STDDEV = "stddev"
    STDVAR = "stdvar"
    TOPK = "topk"
    BOTTOMK = "bottomk"
    COUNT_VALUES = "count_values"
    QUANTILE = "quantile"
    LIMITK = "limitk"
    LIMIT_RATIO = "limit_ratio"
    # keywords
    OFFSET = "offset"
    BY = "by"
    WITHOUT = "without"
    ON = "on"
    IGNORING = "ignoring"
    GROUP_LEFT = "group_left"
    GROUP_RIGHT = "group_right"
    BOOL = "bool"
    # preprocessors
    START = "start"
    END = "end"


OPERATORS = frozenset(
    {
        T.ADD,
        T.SUB,
        T.MUL,
        T.DIV,
        T.MOD,
        T.POW,
        T.EQLC,
        T.NEQ,
        T.LTE,
        T.LSS,
        T.GTE,
        T.GTR,
        T.EQL_REGEX,
        T.NEQ_REGEX,
        T.LAND,
        T.LOR,
        T.LUNLESS,
        T.ATAN2,
        T.AT,
    }
)
DURATION_OPERATORS = {T.ADD: "+", T.SUB: "-", T.MUL: "*", T.DIV: "/", T.MOD: "%", T.POW: "^"}
"""The operators of a duration expression (``[26m+4m]``, ``offset (1m*2)``), as they print."""
AGGREGATORS = frozenset(
    {
        T.SUM,
        T.AVG,
        T.COUNT,
        T.MIN,
        T.MAX,
        T.GROUP,
        T.STDDEV,
        T.STDVAR,
        T.TOPK,
        T.BOTTOMK,
        T.COUNT_VALUES,
        T.QUANTILE,
        T.LIMITK,
        T.LIMIT_RATIO,
    }
)
KEYWORDS = frozenset({T.OFFSET, T.BY, T.WITHOUT, T.ON, T.IGNORING, T.GROUP_LEFT, T.GROUP_RIGHT, T.BOOL})
WORDS: dict[str, T] = {
    t.value: t for t in (*OPERATORS, *AGGREGATORS, *KEYWORDS, T.START, T.END) if t.value[0].isalpha()
}
PUNCT = frozenset(
    {
        T.LEFT_PAREN,
        T.RIGHT_PAREN,
        T.LEFT_BRACE,
        T.RIGHT_BRACE,
        T.LEFT_BRACKET,
        T.RIGHT_BRACKET,
        T.COMMA,
        T.EQL,
        T.COLON,
        T.START,
        T.END,
    }
)


_ESCAPED = re.compile(r'[\x00-\x1f"\\]')
"""What ``json.dumps(ensure_ascii=False)`` escapes: control characters, ``"`` and ``\\``."""


def go_quote(text: str) -> str:
    """Go's ``%q`` of a string (close enough for messages)."""
    if _ESCAPED.search(text) is None:  # the common case, without json's call overhead (~1.5 µs)
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


def go_quote_rune(c: str) -> str:
    """Go's ``%q`` of a rune."""
    if c == "":
        return "'\\ufffd'"
    if c == "'":
        return "'\\''"
    if c == "\\":
        return "'\\\\'"
    if c.isprintable():
        return f"'{c}'"
    return "'" + json.dumps(c)[1:-1] + "'"


@dataclass(frozen=True, slots=True)
class Token:
    type: T
    text: str
    pos: int

    @property
    def end(self) -> int:
        return self.pos + len(self.text)

    def desc(self) -> str:
        """How Prometheus names this token in "unexpected ..." messages."""
        t = self.type
        if t is T.EOF:
            return "end of input"
        if t in OPERATORS:
            return f"<op:{self.text}>"
        if t in AGGREGATORS:
            return f"<aggr:{self.text}>"
        if t in KEYWORDS:
            return f"<{self.text}>"
        if t in PUNCT:
            return go_quote(self.text)
        quoted = go_quote(self.text)
        if t not in (T.IDENTIFIER, T.METRIC_IDENTIFIER) and len(self.text) > 10:
            quoted = go_quote(self.text[:10]) + "..."
        return f"{t.value} {quoted}"


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


def unquote(literal: str) -> str:
    """The value of a lexed STRING token, with Go's semantics (the lexer validated it).

    As in Go, ``\\x..`` and octal escapes are *bytes* and ``\\u``/``\\U`` are code points,
    encoded as UTF-8: ``"\\xc3\\xa9"`` is ``é``. Bytes that do not form UTF-8 are kept as
    lone surrogates (``surrogateescape``), so they never match a label value (always valid
    UTF-8) and :func:`is_valid_utf8` tells them apart.
    """
    if literal.startswith("`"):
        return literal[1:-1]
    body = literal[1:-1]
    if "\\" not in body:
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            j = body.find("\\", i)
            j = len(body) if j < 0 else j
            out += body[i:j].encode("utf-8", "surrogateescape")
            i = j
            continue
        e = body[i + 1]
        if e in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[e].encode()
            i += 2
        elif e in "01234567":
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        elif e == "x":
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        else:
            width = 4 if e == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode("utf-8")
            i += 2 + width
    return out.decode("utf-8", "surrogateescape")


def is_valid_utf8(text: str) -> bool:
    """False for strings holding bytes that are not UTF-8 (see :func:`unquote`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_DURATION_RE = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?\Z")
_DURATION_UNITS_MS = (31_536_000_000, 604_800_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def parse_duration_ms(text: str) -> int | None:
    """Prometheus duration (``1h30m``, ``5m``, ``250ms``) in ms; None if malformed."""
    m = _DURATION_RE.match(text)
    if m is None or not text:
        return None
    return sum(int(g) * mult for g, mult in zip(m.groups(), _DURATION_UNITS_MS, strict=True) if g)


def parse_number(text: str) -> float:
    """Go's ``ParseInt(s, 0, 64)`` falling back to ``ParseFloat`` (so ``010`` is octal 8)."""
    low = text.lower().replace("_", "")
    if low in ("inf", "+inf"):
        return math.inf
    if low == "nan":
        return math.nan
    try:
        value = int(text, 8) if re.fullmatch(r"0[0-7_]+", text) else int(text, 0)
        if -(2**63) <= value < 2**63:
            return float(value)
    except ValueError:
        pass
    if low.startswith("0x"):
        raise ValueError(text)
    return float(text)
