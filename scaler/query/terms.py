"""The leaves of the PromQL grammar, under :class:`scaler.query.parser.Parser`: selectors and
their label matchers, grouping label lists, durations and numbers, and the ``[range]``,
``offset`` and ``@`` suffixes."""

from __future__ import annotations

import math
import re

from scaler.model import METRIC_NAME, Matcher
from scaler.query.ast import At, Expr, MatrixSelector, VectorSelector
from scaler.query.stream import TokenStream
from scaler.query.tokens import AGGREGATORS, T, Token, go_quote, parse_duration_ms, parse_number, unquote
from scaler.regex import RegexError

_MATCH_OPS = {T.EQL: "=", T.NEQ: "!=", T.EQL_REGEX: "=~", T.NEQ_REGEX: "!~"}
METRIC_WORDS = AGGREGATORS | {
    T.IDENTIFIER,
    T.METRIC_IDENTIFIER,
    T.BY,
    T.WITHOUT,
    T.OFFSET,
    T.LAND,
    T.LOR,
    T.LUNLESS,
    T.START,
    T.END,
}
_LABEL_WORDS = METRIC_WORDS | {T.BOOL, T.ON, T.IGNORING, T.GROUP_LEFT, T.GROUP_RIGHT, T.ATAN2}
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_MAX_DURATION_MS = (2**63 - 1) // 1_000_000
"""The longest duration Prometheus parses (a Go ``time.Duration``, ~292 years); longer is
``duration out of range`` there, and would overflow the store's int64 timestamps here."""


def start_of(e: Expr) -> int:
    return e.pos[0]


def end_of(e: Expr) -> int:
    return e.pos[1]


class TermParser(TokenStream):
    def range_suffix(self, expr: Expr) -> Expr:
        open_tok = self.advance()
        if self.kind() not in (T.NUMBER, T.DURATION):
            raise self.unexpected("subquery selector", "number or duration")
        range_ms = self.duration_literal()
        if self.kind() is T.COLON:
            raise self.error(open_tok.pos, "unsupported: subquery")
        if self.kind() is not T.RIGHT_BRACKET:
            raise self.unexpected("subquery or range", '":" or "]"')
        close_tok = self.advance()
        message = ""
        if not isinstance(expr, VectorSelector):
            message = "ranges only allowed for vector selectors"
        elif expr.offset_ms:
            message = "no offset modifiers allowed before range"
        elif expr.at is not None:
            message = "no @ modifiers allowed before range"
        if message:
            raise self.error(open_tok.pos, message)
        assert isinstance(expr, VectorSelector)
        return MatrixSelector(expr, range_ms, pos=(start_of(expr), close_tok.end))

    def duration_literal(self) -> int:
        tok = self.advance()
        if tok.type is T.NUMBER:
            seconds = self.number(tok)
            if not abs(seconds) * 1000 <= _MAX_DURATION_MS:  # also NaN
                raise self.error(tok.pos, "duration out of range")
            return int(seconds * 1000)
        ms = parse_duration_ms(tok.text)
        if ms is None:
            raise self.error(tok.pos, f"not a valid duration string: {go_quote(tok.text)}")
        if ms > _MAX_DURATION_MS:
            raise self.error(tok.pos, "duration out of range")
        return ms

    def number(self, tok: Token) -> float:
        try:
            return parse_number(tok.text)
        except ValueError:
            raise self.error(
                tok.pos, f"error parsing number: strconv.ParseFloat: parsing {go_quote(tok.text)}: invalid syntax"
            ) from None

    def _selector_of(self, expr: Expr, what: str) -> VectorSelector:
        vs = expr.selector if isinstance(expr, MatrixSelector) else expr
        if not isinstance(vs, VectorSelector):
            raise self.error(
                start_of(expr),
                f"{what} modifier must be preceded by an instant vector"
                " selector or range vector selector or a subquery",
            )
        return vs

    def _rebuild(self, expr: Expr, vs: VectorSelector) -> Expr:
        if isinstance(expr, MatrixSelector):
            return MatrixSelector(vs, expr.range_ms, pos=(start_of(expr), self.last_end))
        return vs

    def offset_suffix(self, expr: Expr) -> Expr:
        self.advance()
        sign = 1
        if self.kind() is T.SUB:
            self.advance()
            sign = -1
        if self.kind() not in (T.NUMBER, T.DURATION):
            raise self.unexpected("offset", "number or duration")
        offset = sign * self.duration_literal()
        vs = self._selector_of(expr, "offset")
        if vs.offset_ms:
            raise self.error(start_of(expr), "offset may not be set multiple times")
        new = VectorSelector(vs.name, vs.matchers, offset, vs.at, pos=(start_of(vs), self.last_end))
        return self._rebuild(expr, new)

    def at_suffix(self, expr: Expr) -> Expr:
        self.advance()
        at: At
        if self.kind() in (T.START, T.END) and self.peek().type is T.LEFT_PAREN:
            at = At("start" if self.advance().type is T.START else "end")
            self.advance()
            self.expect(T.RIGHT_PAREN, "@", "timestamp")
        else:
            sign = 1.0
            if self.kind() in (T.ADD, T.SUB):
                sign = -1.0 if self.advance().type is T.SUB else 1.0
            if self.kind() not in (T.NUMBER, T.DURATION):
                raise self.unexpected("@", "timestamp")
            tok = self.tok
            seconds = (self.number(tok) if tok.type is T.NUMBER else self.duration_literal() / 1000) * sign
            if tok.type is T.NUMBER:
                self.advance()
            if not math.isfinite(seconds) or abs(seconds) >= 2**63:
                raise self.error(start_of(expr), f"timestamp out of bounds for @ modifier: {seconds:f}")
            at = At("time", round(seconds * 1000))
        vs = self._selector_of(expr, "@")
        if vs.at is not None:
            raise self.error(start_of(expr), "@ <timestamp> may not be set multiple times")
        new = VectorSelector(vs.name, vs.matchers, vs.offset_ms, at, pos=(start_of(vs), self.last_end))
        return self._rebuild(expr, new)

    def selector(self, name: str, start: int) -> VectorSelector:
        matchers: list[Matcher] = []
        if self.kind() is T.LEFT_BRACE:
            self.advance()
            while self.kind() is not T.RIGHT_BRACE:
                matchers.append(self.label_matcher())
                if self.kind() is T.COMMA:
                    self.advance()
                elif self.kind() is not T.RIGHT_BRACE:
                    raise self.unexpected("label matching", '"," or "}"')
            self.advance()
        if name:
            matchers.append(Matcher.of(METRIC_NAME, "=", name))
        return VectorSelector(name, tuple(matchers), pos=(start, self.last_end))

    def label_matcher(self) -> Matcher:
        tok = self.tok
        if tok.type is T.STRING:
            self.advance()
            if self.kind() not in _MATCH_OPS:
                return Matcher.of(METRIC_NAME, "=", unquote(tok.text))
            label = unquote(tok.text)
        elif tok.type is T.IDENTIFIER:
            self.advance()
            if self.kind() not in _MATCH_OPS:
                raise self.unexpected("label matching", "label matching operator")
            label = tok.text
        else:
            raise self.unexpected("label matching", 'identifier or "}"')
        op = _MATCH_OPS[self.advance().type]
        value_tok = self.expect(T.STRING, "label matching", "string")
        value = unquote(value_tok.text)
        try:
            return Matcher.of(label, op, value)
        except RegexError as exc:
            raise self.error(tok.pos, f"error parsing regexp: {exc.msg}: `{value}`") from None

    def grouping_labels(self) -> tuple[str, ...]:
        self.expect(T.LEFT_PAREN, "grouping opts", '"("')
        labels: list[str] = []
        while self.kind() is not T.RIGHT_PAREN:
            tok = self.tok
            if tok.type is T.STRING:
                labels.append(unquote(tok.text))
            elif tok.type in _LABEL_WORDS and _LABEL_RE.match(tok.text):
                labels.append(tok.text)
            else:
                raise self.unexpected("grouping opts", "label")
            self.advance()
            if self.kind() is T.COMMA:
                self.advance()
            elif self.kind() is not T.RIGHT_PAREN:
                raise self.unexpected("grouping opts", '"," or ")"')
        self.advance()
        return tuple(labels)
