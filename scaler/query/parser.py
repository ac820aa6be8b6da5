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
matching, expected string``); type errors are found afterwards by :class:`~scaler.query.checker.Checker`, in the
order Prometheus' ``checkAST`` finds them. Subqueries (``x[5m:1m]``) are rejected with
``unsupported: subquery``.

Layers: :class:`~scaler.query.stream.TokenStream` (lookahead, positioned errors) ←
:class:`~scaler.query.terms.TermParser` (selectors, matchers, labels, durations, suffixes) ←
:class:`Parser` (expressions, operators, calls, aggregations, nesting depth).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from scaler.model import Matcher
from scaler.query import terms
from scaler.query.ast import (
    AGGREGATE_OPS,
    FUNCTIONS,
    PARAM_AGGREGATE_OPS,
    SET_OPS,
    UNSUPPORTED_FUNCTIONS,
    AggregateExpr,
    BinaryExpr,
    Call,
    Card,
    Expr,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    UnaryExpr,
    ValueType,
    VectorMatching,
)
from scaler.query.checker import Checker
from scaler.query.terms import METRIC_WORDS, TermParser, end_of, start_of
from scaler.query.tokens import (
    AGGREGATORS,
    T,
    go_quote,
    unquote,
)

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
MAX_DEPTH = terms.MAX_DEPTH


class Parser(TermParser):
    """One parse of one query text (use :func:`parse_promql`)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.op_pos: dict[int, tuple[int, int]] = {}
        self.depths: dict[int, int] = {}
        """Tree depth of each inner node built so far, by ``id`` (leaves are 1)."""

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
            raise self.error(start_of(node), terms.TOO_DEEP)
        self.depths[id(node)] = depth
        return node

    def expression(self, min_prec: int) -> Expr:
        self.deeper()
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
                pos=(start_of(left), end_of(right)),
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
                return NumberLiteral(value, pos=(op_tok.pos, end_of(operand)), duration=operand.duration)
            return self.nested(UnaryExpr(op_tok.text, operand, pos=(op_tok.pos, end_of(operand))), operand)
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

    def primary(self) -> Expr:
        tok = self.tok
        t = tok.type
        if t is T.NUMBER:
            self.advance()
            return NumberLiteral(self.number(tok), pos=(tok.pos, tok.end))
        if t is T.DURATION:
            ms = self.duration_literal()
            return NumberLiteral(ms / 1000, pos=(tok.pos, tok.end), duration=True)
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
        if t in METRIC_WORDS:
            self.advance()
            return self.selector(tok.text, tok.pos)
        raise self.unexpected()

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
    elif tok.type in METRIC_WORDS:
        p.advance()
        vs = p.selector(tok.text, tok.pos)
    else:
        raise p.unexpected()
    if p.kind() is not T.EOF:
        raise p.unexpected()
    return vs.matchers
