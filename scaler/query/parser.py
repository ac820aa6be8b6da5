"""PromQL parser (Prometheus 3 dialect): recursive descent with precedence climbing.

Grammar (lowest precedence first; ``^`` is right-associative, the others left)::

    expr        = binary
    binary      = unary { binop modifiers unary }
    binop       = "or" | "and" | "unless"                        (1, 2, 2)
                | "==" | "!=" | ">" | "<" | ">=" | "<="          (3)
                | "+" | "-"                                      (4)
                | "*" | "/" | "%" | "atan2"                      (5)
                | "^"                                            (6)
    modifiers   = [ "bool" ] [ ("on" | "ignoring") labels [ ("group_left" | "group_right") [labels] ] ]
    unary       = ("+" | "-") unary_operand | postfix           (binds like "*": -a^b = -(a^b))
    postfix     = primary { "[" duration "]" | "offset" ["-"] duration | "@" (number | "start()" | "end()") }
    primary     = number | duration | string | "(" expr ")"
                | aggregator ( [grouping] "(" args ")" | "(" args ")" [grouping] )
                | identifier "(" [ expr { "," expr } ] ")"            (function call)
                | metric_name [ "{" matchers "}" ] | "{" matchers "}"
    grouping    = ("by" | "without") labels
    labels      = "(" [ label { "," label } [","] ] ")"          (label: identifier, keyword or "quoted")
    matchers    = [ matcher { "," matcher } [","] ]
    matcher     = (identifier | string) ("=" | "!=" | "=~" | "!~") string | string   (bare string: metric name)
    duration    = 1h30m | 5m | 500ms | ... | number (seconds)

Syntax errors are raised at once, with Prometheus' wording (``unexpected "}" in label
matching, expected string``); type errors are found afterwards by :func:`_Checker`, in the
order Prometheus' ``checkAST`` finds them. Subqueries (``x[5m:1m]``) are rejected with
``unsupported: subquery``.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import TypeVar

from scaler.model import METRIC_NAME, Matcher
from scaler.query.ast import (
    AGGREGATE_OPS,
    FUNCTIONS,
    PARAM_AGGREGATE_OPS,
    SET_OPS,
    UNSUPPORTED_FUNCTIONS,
    AggregateExpr,
    At,
    BinaryExpr,
    Call,
    Card,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    UnaryExpr,
    ValueType,
    VectorMatching,
    VectorSelector,
)
from scaler.query.checker import Checker
from scaler.query.errors import QueryError
from scaler.query.lexer import Lexer
from scaler.query.tokens import (
    AGGREGATORS,
    T,
    Token,
    go_quote,
    parse_duration_ms,
    parse_number,
    unquote,
)
from scaler.regex import RegexError

E = TypeVar("E", bound=Expr)

_BINARY_PREC: dict[T, int] = {
    T.LOR: 1,
    T.LAND: 2,
    T.LUNLESS: 2,
    T.EQLC: 3,
    T.NEQ: 3,
    T.LTE: 3,
    T.LSS: 3,
    T.GTE: 3,
    T.GTR: 3,
    T.ADD: 4,
    T.SUB: 4,
    T.MUL: 5,
    T.DIV: 5,
    T.MOD: 5,
    T.ATAN2: 5,
    T.POW: 6,
}
_UNARY_OPERAND_PREC = 6  # the operand of unary +/- only absorbs "^"
_MATCH_OPS = {T.EQL: "=", T.NEQ: "!=", T.EQL_REGEX: "=~", T.NEQ_REGEX: "!~"}
_METRIC_WORDS = AGGREGATORS | {
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
_LABEL_WORDS = _METRIC_WORDS | {T.BOOL, T.ON, T.IGNORING, T.GROUP_LEFT, T.GROUP_RIGHT, T.ATAN2}
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
MAX_DEPTH = 128
"""How deeply expressions may nest (parentheses, calls, operands): Python recurses once or a
few times per level in every pass over the tree, and must stay well inside its recursion
limit. Prometheus has no such limit; no real query comes near it."""
_TOO_DEEP = f"expression nests too deeply (more than {MAX_DEPTH} levels)"
_MAX_DURATION_MS = (2**63 - 1) // 1_000_000
"""The longest duration Prometheus parses (a Go ``time.Duration``, ~292 years); longer is
``duration out of range`` there, and would overflow the store's int64 timestamps here."""


class Parser:
    """One parse of one query text (use :func:`parse_promql`)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lexer = Lexer(text)
        self.tok = self.lexer.next_token()
        self._ahead: Token | None = None
        self.last_end = 0
        self.op_pos: dict[int, tuple[int, int]] = {}
        self.nesting = 0
        """How many :meth:`expression` calls are active (bounds the parser's own recursion)."""
        self.depths: dict[int, int] = {}
        """Tree depth of each inner node built so far, by ``id`` (leaves are 1)."""

    # ------------------------------------------------------------------ plumbing

    def error(self, pos: int, message: str) -> QueryError:
        return QueryError.at(self.text, pos, message)

    def unexpected(self, context: str = "", expected: str = "") -> QueryError:
        msg = f"unexpected {self.tok.desc()}"
        if context:
            msg += f" in {context}"
        if expected:
            msg += f", expected {expected}"
        return self.error(self.tok.pos, msg)

    def kind(self) -> T:
        """The current token's type (a call, so type checkers re-read it after ``advance``)."""
        return self.tok.type

    def peek(self) -> Token:
        if self._ahead is None:
            self._ahead = self.lexer.next_token()
        return self._ahead

    def advance(self) -> Token:
        tok = self.tok
        self.last_end = tok.end
        if self._ahead is not None:
            self.tok, self._ahead = self._ahead, None
        else:
            self.tok = self.lexer.next_token()
        return tok

    def expect(self, t: T, context: str = "", expected: str = "") -> Token:
        if self.kind() is not t:
            raise self.unexpected(context, expected)
        return self.advance()

    # ------------------------------------------------------------------ expressions

    def parse(self) -> Expr:
        if self.kind() is T.EOF:
            raise self.error(0, "no expression found in input")
        expr = self.expression(0)
        if self.kind() is not T.EOF:
            raise self.unexpected()
        Checker(self.text, self.op_pos).check(expr)
        return expr

    def nested(self, node: E, *children: Expr) -> E:
        """Record ``node``'s tree depth; a tree deeper than MAX_DEPTH is a QueryError, because
        every later pass (type checks, printing, evaluation) recurses once per level."""
        depth = 1 + max((self.depths.get(id(c), 1) for c in children), default=0)
        if depth > MAX_DEPTH:
            raise self.error(_start(node), _TOO_DEEP)
        self.depths[id(node)] = depth
        return node

    def expression(self, min_prec: int) -> Expr:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(self.tok.pos, _TOO_DEEP)
        left = self.unary()
        while True:
            prec = _BINARY_PREC.get(self.kind())
            if prec is None or prec < min_prec:
                self.nesting -= 1
                return left
            op_tok = self.advance()
            op = op_tok.text.lower()
            return_bool, matching = self.bin_modifiers()
            right = self.expression(prec if op_tok.type is T.POW else prec + 1)
            vector_op = left.type is ValueType.VECTOR and right.type is ValueType.VECTOR
            if op in SET_OPS and matching.card == "one-to-one":
                matching = replace(matching, card="many-to-many")
            node = BinaryExpr(
                op,
                left,
                right,
                matching if vector_op or matching.labels else None,
                return_bool,
                pos=(_start(left), _end(right)),
            )
            left = self.nested(node, left, right)
            self.op_pos[id(left)] = (op_tok.pos, op_tok.end)

    def bin_modifiers(self) -> tuple[bool, VectorMatching]:
        return_bool = False
        if self.kind() is T.BOOL:
            self.advance()
            return_bool = True
        if self.kind() not in (T.ON, T.IGNORING):
            return return_bool, VectorMatching()
        on = self.advance().type is T.ON
        labels = self.grouping_labels()
        card: Card = "one-to-one"
        include: tuple[str, ...] = ()
        if self.kind() in (T.GROUP_LEFT, T.GROUP_RIGHT):
            card = "many-to-one" if self.advance().type is T.GROUP_LEFT else "one-to-many"
            if self.kind() is T.LEFT_PAREN:
                include = self.grouping_labels()
        return return_bool, VectorMatching(card, labels, on, include)

    def unary(self) -> Expr:
        if self.kind() in (T.ADD, T.SUB):
            op_tok = self.advance()
            operand = self.expression(_UNARY_OPERAND_PREC)
            if isinstance(operand, NumberLiteral):
                value = -operand.value if op_tok.type is T.SUB else operand.value
                return NumberLiteral(value, pos=(op_tok.pos, _end(operand)))
            return self.nested(UnaryExpr(op_tok.text, operand, pos=(op_tok.pos, _end(operand))), operand)
        return self.postfix(self.primary())

    def postfix(self, expr: Expr) -> Expr:
        while True:
            t = self.kind()
            if t is T.LEFT_BRACKET:
                expr = self.range_suffix(expr)
            elif t is T.OFFSET:
                expr = self.offset_suffix(expr)
            elif t is T.AT:
                expr = self.at_suffix(expr)
            else:
                return expr

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
        return MatrixSelector(expr, range_ms, pos=(_start(expr), close_tok.end))

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
                _start(expr),
                f"{what} modifier must be preceded by an instant vector"
                " selector or range vector selector or a subquery",
            )
        return vs

    def _rebuild(self, expr: Expr, vs: VectorSelector) -> Expr:
        if isinstance(expr, MatrixSelector):
            return MatrixSelector(vs, expr.range_ms, pos=(_start(expr), self.last_end))
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
            raise self.error(_start(expr), "offset may not be set multiple times")
        new = VectorSelector(vs.name, vs.matchers, offset, vs.at, pos=(_start(vs), self.last_end))
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
                raise self.error(_start(expr), f"timestamp out of bounds for @ modifier: {seconds:f}")
            at = At("time", round(seconds * 1000))
        vs = self._selector_of(expr, "@")
        if vs.at is not None:
            raise self.error(_start(expr), "@ <timestamp> may not be set multiple times")
        new = VectorSelector(vs.name, vs.matchers, vs.offset_ms, at, pos=(_start(vs), self.last_end))
        return self._rebuild(expr, new)

    def primary(self) -> Expr:
        tok = self.tok
        t = tok.type
        if t is T.NUMBER:
            self.advance()
            return NumberLiteral(self.number(tok), pos=(tok.pos, tok.end))
        if t is T.DURATION:
            ms = self.duration_literal()
            return NumberLiteral(ms / 1000, pos=(tok.pos, tok.end))
        if t is T.STRING:
            self.advance()
            return StringLiteral(unquote(tok.text), pos=(tok.pos, tok.end))
        if t is T.LEFT_PAREN:
            self.advance()
            inner = self.expression(0)
            close = self.expect(T.RIGHT_PAREN)
            return self.nested(ParenExpr(inner, pos=(tok.pos, close.end)), inner)
        if t is T.LEFT_BRACE:
            return self.selector("", tok.pos)
        nxt = self.peek().type
        if t in AGGREGATORS and nxt in (T.LEFT_PAREN, T.BY, T.WITHOUT):
            return self.aggregate()
        if t is T.IDENTIFIER and nxt is T.LEFT_PAREN:
            return self.call()
        if t in _METRIC_WORDS:
            self.advance()
            return self.selector(tok.text, tok.pos)
        raise self.unexpected()

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

    def call_args(self, context: str) -> list[Expr]:
        self.expect(T.LEFT_PAREN, context)
        args: list[Expr] = []
        while self.kind() is not T.RIGHT_PAREN:
            args.append(self.expression(0))
            if self.kind() is T.COMMA:
                comma = self.advance()
                if self.kind() is T.RIGHT_PAREN:
                    raise self.error(comma.pos, "trailing commas not allowed in function call args")
            elif self.kind() is not T.RIGHT_PAREN:
                raise self.unexpected(context)
        self.advance()
        return args

    def call(self) -> Expr:
        name_tok = self.advance()
        args = self.call_args("")
        name = name_tok.text
        if name in UNSUPPORTED_FUNCTIONS:
            raise self.error(name_tok.pos, f"unsupported: function {go_quote(name)} ({UNSUPPORTED_FUNCTIONS[name]})")
        if name not in FUNCTIONS:
            raise self.error(name_tok.pos, f"unknown function with name {go_quote(name)}")
        return self.nested(Call(name, tuple(args), pos=(name_tok.pos, self.last_end)), *args)

    def aggregate(self) -> Expr:
        op_tok = self.advance()
        op = op_tok.text.lower()
        grouping: tuple[str, ...] = ()
        without = False
        modifier_seen = False
        if self.kind() in (T.BY, T.WITHOUT):
            without = self.advance().type is T.WITHOUT
            grouping = self.grouping_labels()
            modifier_seen = True
        if self.kind() is not T.LEFT_PAREN:
            raise self.unexpected("aggregation")
        args = self.call_args("aggregation")
        if not modifier_seen and self.kind() in (T.BY, T.WITHOUT):
            without = self.advance().type is T.WITHOUT
            grouping = self.grouping_labels()
        pos = (op_tok.pos, self.last_end)
        if op not in AGGREGATE_OPS:
            raise self.error(op_tok.pos, f"unsupported: {op}() (experimental aggregation)")
        if not args:
            raise self.error(op_tok.pos, "no arguments for aggregate expression provided")
        want = 2 if op in PARAM_AGGREGATE_OPS else 1
        if len(args) != want:
            raise self.error(
                op_tok.pos,
                f"wrong number of arguments for aggregate expression provided, expected {want}, got {len(args)}",
            )
        param = args[0] if want == 2 else None
        return self.nested(AggregateExpr(op, args[-1], param, grouping, without, pos=pos), *args)


def _start(e: Expr) -> int:
    return e.pos[0]


def _end(e: Expr) -> int:
    return e.pos[1]


def parse_promql(text: str) -> Expr:
    """Parse a PromQL expression; raises :class:`QueryError` with the position on errors."""
    return Parser(text).parse()


def parse_metric_selector(text: str) -> tuple[Matcher, ...]:
    """Parse a bare series selector (``match[]`` of the HTTP API)."""
    p = Parser(text)
    if p.kind() is T.EOF:
        raise p.error(0, "no expression found in input")
    tok = p.tok
    if tok.type is T.LEFT_BRACE:
        vs = p.selector("", tok.pos)
    elif tok.type in _METRIC_WORDS:
        p.advance()
        vs = p.selector(tok.text, tok.pos)
    else:
        raise p.unexpected()
    if p.kind() is not T.EOF:
        raise p.unexpected()
    return vs.matchers
