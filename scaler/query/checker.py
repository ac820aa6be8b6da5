"""Type rules of a parsed PromQL tree (Prometheus' ``checkAST``), visited children-first so
the first error reported is the one Prometheus reports."""

from __future__ import annotations

from collections.abc import Callable

from scaler.model import METRIC_NAME
from scaler.query.ast import (
    COMPARISON_OPS,
    FUNCTIONS,
    SET_OPS,
    AggregateExpr,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    ParenExpr,
    SubqueryExpr,
    UnaryExpr,
    ValueType,
    VectorSelector,
)
from scaler.query.errors import QueryError
from scaler.query.tokens import go_quote


def _start(e: Expr) -> int:
    return e.pos[0]


class Checker:
    """Prometheus' ``checkAST``: type rules, visited children-first."""

    def __init__(self, text: str, op_pos: dict[int, tuple[int, int]]) -> None:
        self.text = text
        self.op_pos = op_pos

    def fail(self, pos: int, message: str) -> QueryError:
        return QueryError.at(self.text, pos, message)

    def expect_type(self, e: Expr, want: ValueType, context: str) -> None:
        got = self.check(e)
        if got is not want:
            raise self.fail(_start(e), f"expected type {want.value} in {context}, got {got.value}")

    def check(self, e: Expr) -> ValueType:
        handler: Callable[[Expr], None] | None = {
            AggregateExpr: self._aggregate,
            BinaryExpr: self._binary,
            Call: self._call,
            ParenExpr: self._paren,
            UnaryExpr: self._unary,
            MatrixSelector: self._matrix,
            SubqueryExpr: self._subquery,
            VectorSelector: self._selector,
        }.get(type(e))
        if handler is not None:
            handler(e)
        return e.type

    def _paren(self, e: Expr) -> None:
        assert isinstance(e, ParenExpr)
        self.check(e.expr)

    def _matrix(self, e: Expr) -> None:
        assert isinstance(e, MatrixSelector)
        self.check(e.selector)

    def _subquery(self, e: Expr) -> None:
        assert isinstance(e, SubqueryExpr)
        got = self.check(e.expr)
        if got is not ValueType.VECTOR:
            raise self.fail(_start(e), f"subquery is only allowed on instant vector, got {got.value} instead")

    def _aggregate(self, e: Expr) -> None:
        assert isinstance(e, AggregateExpr)
        self.expect_type(e.expr, ValueType.VECTOR, "aggregation expression")
        if e.param is not None:
            want = ValueType.STRING if e.op == "count_values" else ValueType.SCALAR
            self.expect_type(e.param, want, "aggregation parameter")

    def _binary(self, e: Expr) -> None:
        assert isinstance(e, BinaryExpr)
        lt, rt = self.check(e.lhs), self.check(e.rhs)
        op_start = self.op_pos.get(id(e), (_start(e), 0))[0]
        if e.return_bool and e.op not in COMPARISON_OPS:
            raise self.fail(op_start, "bool modifier can only be used on comparison operators")
        if e.op in COMPARISON_OPS and not e.return_bool and lt is ValueType.SCALAR and rt is ValueType.SCALAR:
            raise self.fail(op_start, "comparisons between scalars must use BOOL modifier")
        mt = e.matching
        if mt is not None and mt.on:
            for label in mt.include:
                if label in mt.labels:
                    raise self.fail(op_start, f"label {go_quote(label)} must not occur in ON and GROUP clause at once")
        for side, t in ((e.lhs, lt), (e.rhs, rt)):
            if t not in (ValueType.SCALAR, ValueType.VECTOR):
                raise self.fail(_start(side), "binary expression must contain only scalar and instant vector types")
        if (lt is not ValueType.VECTOR or rt is not ValueType.VECTOR) and mt is not None:
            if mt.labels:
                raise self.fail(_start(e), "vector matching only allowed between instant vectors")
        elif e.op in SET_OPS and mt is not None and mt.card in ("many-to-one", "one-to-many"):
            raise self.fail(_start(e), f"no grouping allowed for {go_quote(e.op)} operation")
        if ValueType.SCALAR in (lt, rt) and e.op in SET_OPS:
            raise self.fail(_start(e), f"set operator {go_quote(e.op)} not allowed in binary scalar expression")

    def _call(self, e: Expr) -> None:
        assert isinstance(e, Call)
        spec = FUNCTIONS[e.func]
        nargs, got = len(spec.arg_types), len(e.args)
        name = go_quote(e.func)
        if spec.variadic == 0:
            if nargs != got:
                raise self.fail(_start(e), f"expected {nargs} argument(s) in call to {name}, got {got}")
        else:
            least = nargs - 1
            if least > got:
                raise self.fail(_start(e), f"expected at least {least} argument(s) in call to {name}, got {got}")
            most = least + spec.variadic
            if spec.variadic > 0 and most < got:
                raise self.fail(_start(e), f"expected at most {most} argument(s) in call to {name}, got {got}")
        for i, arg in enumerate(e.args):
            want = spec.arg_types[min(i, nargs - 1)]
            t = self.check(arg)
            if t is not want:
                raise self.fail(_start(arg), f"expected type {want.value} in call to function {name}, got {t.value}")

    def _unary(self, e: Expr) -> None:
        assert isinstance(e, UnaryExpr)
        t = self.check(e.expr)
        if t not in (ValueType.SCALAR, ValueType.VECTOR):
            raise self.fail(
                _start(e),
                "unary expression only allowed on expressions of type "
                f"scalar or instant vector, got {go_quote(t.value)}",
            )

    def _selector(self, e: Expr) -> None:
        assert isinstance(e, VectorSelector)
        if e.name:
            for m in e.matchers[:-1]:
                if m.name == METRIC_NAME:
                    raise self.fail(
                        _start(e), f"metric name must not be set twice: {go_quote(e.name)} or {go_quote(m.value)}"
                    )
            return
        if not any(not m.matches_empty for m in e.matchers):
            raise self.fail(_start(e), "vector selector must contain at least one non-empty matcher")
