"""The leaves of the PromQL grammar, under :class:`scaler.query.parser.Parser`: selectors and
their label matchers, grouping label lists, durations and numbers, and the ``[range]``,
``offset`` and ``@`` suffixes."""

from __future__ import annotations

import math
import re
from dataclasses import replace

from scaler.model import METRIC_NAME, Matcher
from scaler.query.ast import (
    DURATION_FUNCTIONS,
    At,
    DurationExpr,
    DurationOperand,
    Expr,
    MatrixSelector,
    NumberLiteral,
    SubqueryExpr,
    VectorSelector,
)
from scaler.query.gomath import duration_seconds
from scaler.query.stream import TokenStream
from scaler.query.tokens import (
    AGGREGATORS,
    DURATION_OPERATORS,
    T,
    Token,
    go_quote,
    parse_duration_ms,
    parse_number,
    unquote,
)
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
_DURATION_START = frozenset({T.NUMBER, T.DURATION, T.LEFT_PAREN, T.ADD, T.SUB, T.IDENTIFIER})
_DURATION_PREC = {T.ADD: 1, T.SUB: 1, T.MUL: 2, T.DIV: 2, T.MOD: 2, T.POW: 3}
MAX_DEPTH = 128
"""How deeply expressions may nest (parentheses, calls, operands, duration expressions): Python
recurses once or a few times per level in parsing and in every pass over the tree, and must stay
well inside its recursion limit. Prometheus has no such limit; no real query comes near it."""
TOO_DEEP = f"expression nests too deeply (more than {MAX_DEPTH} levels)"
MAX_DURATION_MS = (2**63 - 1) // 1_000_000
"""The longest duration Prometheus parses (a Go ``time.Duration``, ~292 years); longer is
``duration out of range`` there, and would overflow the store's int64 timestamps here."""


def _negated(node: DurationOperand, pos: int) -> DurationOperand:
    """Unary minus in a duration expression, as Prometheus' grammar builds it: folded into a
    literal (keeping its spelling), else a ``-`` node without a left operand."""
    if isinstance(node, NumberLiteral):
        return replace(node, value=-node.value, pos=(pos, node.pos[1]))
    return DurationExpr("-", None, node)


def start_of(e: Expr) -> int:
    return e.pos[0]


def end_of(e: Expr) -> int:
    return e.pos[1]


class TermParser(TokenStream):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.nesting = 0
        """How many levels of the parser's own recursion are active (expressions, and the
        operands of duration expressions), bounded by :data:`MAX_DEPTH`."""

    def deeper(self) -> None:
        """Enter one more level of recursion (the caller leaves it with ``nesting -= 1``)."""
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(self.tok.pos, TOO_DEEP)

    def range_suffix(self, expr: Expr) -> Expr:
        open_tok = self.advance()
        if self.kind() not in _DURATION_START:
            raise self.unexpected("subquery selector", "number or duration")
        range_ms, range_expr = self.duration_expr()
        if self.kind() is T.COLON:
            self.advance()
            step_ms, step_expr = 0, None
            if self.kind() is not T.RIGHT_BRACKET:
                step_ms, step_expr = self.duration_expr()
                if step_ms <= 0:
                    raise self.error(open_tok.pos, "step must be greater than 0")
            close_tok = self.expect(T.RIGHT_BRACKET, "subquery selector", '"]"')
            if range_ms <= 0:
                raise self.error(open_tok.pos, "range must be greater than 0")
            pos = (start_of(expr), close_tok.end)
            return SubqueryExpr(expr, range_ms, step_ms, pos=pos, range_expr=range_expr, step_expr=step_expr)
        if self.kind() is not T.RIGHT_BRACKET:
            raise self.unexpected("subquery or range", '":" or "]"')
        close_tok = self.advance()
        message = ""
        if not isinstance(expr, VectorSelector):
            message = "ranges only allowed for vector selectors"
        elif expr.offset_ms or expr.offset_expr is not None:
            message = "no offset modifiers allowed before range"
        elif expr.at is not None:
            message = "no @ modifiers allowed before range"
        if message:
            raise self.error(open_tok.pos, message)
        assert isinstance(expr, VectorSelector)
        return MatrixSelector(expr, range_ms, pos=(start_of(expr), close_tok.end), range_expr=range_expr)

    def duration_expr(self, group_only: bool = False) -> tuple[int, DurationExpr | None]:
        """A duration expression (``5m``, ``26m+4m``, ``2m*(10+5)``, ``30``): its value in
        milliseconds, and the expression as written unless it is a plain (signed) literal.
        ``group_only`` reads one parenthesised group and stops at its ``)``."""
        start = self.tok.pos
        seconds, node = self._duration_unary() if group_only else self._duration_binary(0)
        if not abs(seconds) * 1000 <= MAX_DURATION_MS:  # also NaN
            raise self.error(start, "duration out of range")
        return round(seconds * 1000), node if isinstance(node, DurationExpr) else None

    def _duration_binary(self, min_prec: int) -> tuple[float, DurationOperand]:
        self.deeper()
        left, left_node = self._duration_unary()
        while True:
            op = self.kind()
            prec = _DURATION_PREC.get(op)
            if prec is None or prec < min_prec:
                self.nesting -= 1
                return left, left_node
            op_tok = self.advance()
            right, right_node = self._duration_binary(prec if op is T.POW else prec + 1)
            left = self._duration_apply(op_tok, left, right)
            left_node = DurationExpr(DURATION_OPERATORS[op], left_node, right_node)

    def _duration_apply(self, op_tok: Token, left: float, right: float) -> float:
        op = op_tok.type
        if op in (T.DIV, T.MOD) and right == 0:
            raise self.error(op_tok.pos, "division by zero" if op is T.DIV else "modulo by zero")
        if op is T.ADD:
            return left + right
        if op is T.SUB:
            return left - right
        if op is T.MUL:
            return left * right
        if op is T.DIV:
            return left / right
        if op is T.MOD:
            return math.fmod(left, right)
        try:
            return math.pow(left, right)
        except (OverflowError, ValueError):
            raise self.error(op_tok.pos, "duration out of range") from None

    def _duration_unary(self) -> tuple[float, DurationOperand]:
        if self.kind() in (T.ADD, T.SUB):
            sign_tok = self.advance()
            value, node = self._duration_binary(_DURATION_PREC[T.POW])
            if sign_tok.type is T.ADD:
                return value, node
            return -value, _negated(node, sign_tok.pos)
        tok = self.tok
        if tok.type is T.LEFT_PAREN:
            self.advance()
            value, node = self._duration_binary(0)
            self.expect(T.RIGHT_PAREN, "duration expression", '")"')
            return value, replace(node, wrapped=True) if isinstance(node, DurationExpr) else node
        if tok.type in (T.NUMBER, T.DURATION):
            ms = self.duration_literal()
            if tok.type is T.NUMBER:
                return ms / 1000, NumberLiteral(self.number(tok), pos=(tok.pos, tok.end))
            return ms / 1000, NumberLiteral(duration_seconds(ms), pos=(tok.pos, tok.end), duration=True)
        if tok.type in METRIC_WORDS and tok.text.lower() in DURATION_FUNCTIONS:
            raise self.error(
                tok.pos,
                f"unsupported: {tok.text.lower()}() in a duration expression "
                "(experimental: Prometheus enables it only with --enable-feature=promql-duration-expr)",
            )
        raise self.unexpected("duration expression", "number or duration")

    def duration_literal(self) -> int:
        tok = self.advance()
        if tok.type is T.NUMBER:
            seconds = self.number(tok)
            if not abs(seconds) * 1000 <= MAX_DURATION_MS:  # also NaN
                raise self.error(tok.pos, "duration out of range")
            return int(seconds * 1000)
        ms = parse_duration_ms(tok.text)
        if ms is None:
            raise self.error(tok.pos, f"not a valid duration string: {go_quote(tok.text)}")
        if ms > MAX_DURATION_MS:
            raise self.error(tok.pos, "duration out of range")
        return ms

    def number(self, tok: Token) -> float:
        try:
            return parse_number(tok.text)
        except ValueError:
            raise self.error(
                tok.pos, f"error parsing number: strconv.ParseFloat: parsing {go_quote(tok.text)}: invalid syntax"
            ) from None

    def _modified(self, expr: Expr, what: str) -> VectorSelector | SubqueryExpr:
        """The node an ``offset``/``@`` applies to (a selector, inside a range, or a subquery)."""
        if isinstance(expr, SubqueryExpr):
            return expr
        vs = expr.selector if isinstance(expr, MatrixSelector) else expr
        if not isinstance(vs, VectorSelector):
            raise self.error(
                start_of(expr),
                f"{what} modifier must be preceded by an instant vector"
                " selector or range vector selector or a subquery",
            )
        return vs

    def _rebuild(
        self, expr: Expr, node: VectorSelector | SubqueryExpr, offset: tuple[int, DurationExpr | None], at: At | None
    ) -> Expr:
        offset_ms, offset_expr = offset
        pos = (start_of(node), self.last_end)
        if isinstance(node, SubqueryExpr):
            return replace(node, offset_ms=offset_ms, offset_expr=offset_expr, at=at, pos=pos)
        vs = VectorSelector(node.name, node.matchers, offset_ms, at, pos=pos, offset_expr=offset_expr)
        if isinstance(expr, MatrixSelector):
            return MatrixSelector(vs, expr.range_ms, pos=(start_of(expr), self.last_end), range_expr=expr.range_expr)
        return vs

    def offset_suffix(self, expr: Expr) -> Expr:
        self.advance()
        negative = signed = False
        if self.kind() in (T.ADD, T.SUB):  # Prometheus' offset_duration_expr: unary_op before a literal or "("
            signed = True
            negative = self.advance().type is T.SUB
        offset_expr = None
        if self.kind() is T.LEFT_PAREN:
            # After a sign the offset is the group alone: "foo offset -(1m) - 8" is
            # "(foo offset -1m) - 8", as Prometheus' "unary_op ( duration_expr )" rule reads it.
            offset, offset_expr = self.duration_expr(group_only=signed)
            if negative and offset_expr is not None:
                offset_expr = DurationExpr("-", None, offset_expr)
        elif self.kind() in (T.NUMBER, T.DURATION):
            offset = self.duration_literal()
        else:
            raise self.unexpected("offset", "number or duration")
        node = self._modified(expr, "offset")
        if node.offset_ms or node.offset_expr is not None:
            raise self.error(start_of(expr), "offset may not be set multiple times")
        return self._rebuild(expr, node, (-offset if negative else offset, offset_expr), node.at)

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
        node = self._modified(expr, "@")
        if node.at is not None:
            raise self.error(start_of(expr), "@ <timestamp> may not be set multiple times")
        return self._rebuild(expr, node, (node.offset_ms, node.offset_expr), at)

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
