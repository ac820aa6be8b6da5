"""Our PromQL engine against Prometheus itself (``promtool test rules``).

All expressions are evaluated by our engine at every evaluation time; the answers are written
into one promtool test file and promtool runs once (well under a second) to check them all.
promtool must be installed: the suite fails (never skips) without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.query import Engine
from tests.promql.promql_cases import (
    EVAL_TIMES,
    EXPRESSIONS,
    INTERVAL_MS,
    PARSE_ERRORS,
    SERIES,
    SUBQUERY_EXPRESSIONS,
)
from tests.promql.promtool_harness import (
    INSTALL_HINT,
    Case,
    Check,
    checks_for,
    load_store,
    normalize_error,
    promtool,
    promtool_file,
    run,
)

_NOW_MS = 20 * 60_000
_CANARY = Check("vector(1)", 60_000, [("{}", 2.0)], origin="canary")


class Outcome:
    def __init__(self, checks: list[Check], failures: dict[tuple[str, str], str]) -> None:
        self.checks = checks
        self.failures = failures

    def problems(self, origin: str) -> list[str]:
        out: list[str] = []
        for c in self.checks:
            if c.origin != origin:
                continue
            failure = self.failures.get(c.key)
            if c.error is not None:
                if failure is None:
                    out.append(f"at {c.key[1]}: we fail with {c.error!r}, Prometheus does not")
                elif normalize_error(failure) != normalize_error(c.error):
                    out.append(
                        f"at {c.key[1]}: error differs\n  ours:       {c.error}\n  Prometheus: {failure.strip()}"
                    )
            elif failure is not None:
                out.append(f"at {c.key[1]}: {c.expr}\n  ours: {c.samples}\n{failure}")
        return out


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    if promtool() is None:
        pytest.fail(INSTALL_HINT)
    engine = Engine(load_store(SERIES, INTERVAL_MS, _NOW_MS))
    checks: list[Check] = [_CANARY]
    for expr in EXPRESSIONS + SUBQUERY_EXPRESSIONS:
        checks += checks_for(engine, Case(expr, EVAL_TIMES))
    for expr in PARSE_ERRORS:
        checks += checks_for(engine, Case(expr, [60_000]))
    path: Path = tmp_path_factory.mktemp("promtool") / "differential.yml"
    path.write_text(promtool_file(SERIES, INTERVAL_MS, checks))
    _, _, failures = run(path)
    return Outcome(checks, failures)


def test_suite_is_large_enough() -> None:
    assert len(set(EXPRESSIONS)) == len(EXPRESSIONS) >= 150
    assert len(set(SUBQUERY_EXPRESSIONS)) == len(SUBQUERY_EXPRESSIONS) >= 60
    assert len(EVAL_TIMES) >= 5


def test_promtool_really_checks_our_answers(outcome: Outcome) -> None:
    """A deliberately wrong answer must be reported, or the suite would prove nothing."""
    assert _CANARY.key in outcome.failures


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_expression_matches_prometheus(outcome: Outcome, expr: str) -> None:
    problems = outcome.problems(expr)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("expr", SUBQUERY_EXPRESSIONS)
def test_subquery_matches_prometheus(outcome: Outcome, expr: str) -> None:
    problems = outcome.problems(expr)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("expr", PARSE_ERRORS)
def test_parse_error_matches_prometheus(outcome: Outcome, expr: str) -> None:
    checks = [c for c in outcome.checks if c.origin == expr]
    assert checks and all(c.error is not None for c in checks), f"{expr!r} should not parse"
    problems = outcome.problems(expr)
    assert not problems, "\n".join(problems)
