"""Differential testing against Prometheus' own engine, through ``promtool test rules``.

For every (expression, evaluation time) our engine computes the answer; the answer becomes
the ``exp_samples`` of a ``promql_expr_test``; ``promtool`` evaluates the same expression over
the same ``input_series`` and reports every test whose answer differs. So promtool checks
our answers against Prometheus.

promtool compares floats exactly and cannot compare NaN (NaN != NaN), so a result holding NaN
is checked as two tests: ``(e) unless ((e) != (e))`` (the non-NaN samples, exact) and
``count by (<labels>) ((e) != (e))`` (which samples are NaN). Expressions our engine rejects
are expected to fail in promtool with the same error text.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from scaler.config import StoreLimits
from scaler.model import STALE_NAN, make_labels
from scaler.query import Engine, QueryError, Scalar, Vector, parse_metric_selector
from scaler.query.printer import format_duration
from scaler.store import Store

INSTALL_HINT = (
    "promtool is required for the differential PromQL tests and was not found on PATH. "
    "Install it with `apt-get update && apt-get install -y prometheus` (Debian/Ubuntu; "
    "`make test` does this)."
)

_NUM = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)"
_ITEM = re.compile(
    rf"(?P<v>{_NUM})(?:(?P<sign>[+-])(?P<inc>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))?"
    r"(?:x(?P<n>\d+))?\Z"
)


def expand_values(text: str) -> list[float | None]:
    """promtool's series notation: ``1 2 _ stale 0+10x3 _x2 5x2`` (None = no sample)."""
    out: list[float | None] = []
    for item in text.split():
        if item == "_":
            out.append(None)
        elif item.startswith("_x"):
            out.extend([None] * int(item[2:]))
        elif item == "stale":
            out.append(STALE_NAN)
        else:
            m = _ITEM.match(item)
            if m is None:
                raise ValueError(f"bad series item {item!r}")
            value = float(m["v"])
            times = int(m["n"]) if m["n"] else 0
            inc = float(m["inc"]) if m["inc"] else 0.0
            if m["sign"] == "-":
                inc = -inc
            for _ in range(times + 1):
                out.append(value)
                value += inc
    return out


@dataclass
class Case:
    expr: str
    times_ms: list[int]


@dataclass
class Check:
    """One promtool test: an expression at a time with our expected answer."""

    expr: str
    t_ms: int
    samples: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    origin: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.expr, format_duration(self.t_ms)


def load_store(series: list[tuple[str, str]], interval_ms: int, now_ms: int) -> Store:
    store = Store(StoreLimits(retention_seconds=10 * 86400), clock=lambda: now_ms / 1000)
    samples = []
    for selector, values in series:
        labels = {m.name: m.value for m in parse_metric_selector(selector)}
        name = labels.pop("__name__")
        pairs = make_labels(name, labels)
        for i, v in enumerate(expand_values(values)):
            if v is not None:
                samples.append((pairs, i * interval_ms, v, False))
    result = store.append(samples)
    assert result.rejected_total == 0, result
    return store


def promql_labels(labels: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in labels) + "}"


def checks_for(engine: Engine, case: Case) -> list[Check]:
    out: list[Check] = []
    for t in case.times_ms:
        try:
            result = engine.instant(case.expr, t)
        except QueryError as err:
            out.append(Check(case.expr, t, error=str(err), origin=case.expr))
            continue
        if isinstance(result, Scalar):
            if math.isnan(result.value):
                out.append(Check(f"({case.expr}) != bool ({case.expr})", t, [("{}", 1.0)], origin=case.expr))
            else:
                out.append(Check(case.expr, t, [("{}", result.value)], origin=case.expr))
            continue
        assert isinstance(result, Vector), f"{case.expr}: {result!r}"
        plain = [(promql_labels(s.labels), s.value) for s in result if not math.isnan(s.value)]
        nans = [s.labels for s in result if math.isnan(s.value)]
        if not nans:
            out.append(Check(case.expr, t, plain, origin=case.expr))
            continue
        e = case.expr
        on = "on(" + ", ".join(sorted({k for s in result for k, _ in s.labels})) + ")"
        out.append(Check(f"({e}) unless {on} (({e}) != {on} ({e}))", t, plain, origin=e))
        by = ", ".join(sorted({k for labels in nans for k, _ in labels}))
        out.append(
            Check(f"count by ({by}) (({e}) != {on} ({e}))", t, [(promql_labels(lb), 1.0) for lb in nans], origin=e)
        )
    return out


def promtool_file(series: list[tuple[str, str]], interval_ms: int, checks: list[Check]) -> str:
    tests = []
    for c in checks:
        entry: dict[str, object] = {"expr": c.expr, "eval_time": format_duration(c.t_ms)}
        entry["exp_samples"] = [{"labels": lb, "value": v} for lb, v in c.samples]
        tests.append(entry)
    doc = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": format_duration(interval_ms),
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": tests,
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


_PAIR = re.compile(r"\[(\{.*?\}), (\{.*?\})\]")


def normalize_error(message: str) -> str:
    """Error text with storage-order dependent parts made canonical: the two duplicate series
    of a many-to-many error are listed in sorted order."""
    return _PAIR.sub(lambda m: "[" + ", ".join(sorted(m.groups())) + "]", message.strip())


def promtool() -> str | None:
    return shutil.which("promtool")


_FAILURE = re.compile(r'^    expr: (?P<q>".*"), time: (?P<t>[^,]+),(?: err: (?P<err>.*))?$')


_NOISE = re.compile(r"^(?:Unit Testing: .*|\s*|\s*FAILED:\s*|\s*SUCCESS\s*)$")


def run(path: Path) -> tuple[int, str, dict[tuple[str, str], str]]:
    """Run promtool on a test file; returns (exit code, output, failures by (expr, time)).

    Raises AssertionError when promtool reports anything that is not a per-test failure
    (a file it could not load would otherwise look like "no failures")."""
    exe = promtool()
    assert exe is not None, INSTALL_HINT
    proc = subprocess.run([exe, "test", "rules", str(path)], capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    failures: dict[tuple[str, str], str] = {}
    current: tuple[str, str] | None = None
    for line in output.splitlines():
        m = _FAILURE.match(line)
        if m is not None:
            current = (json.loads(m["q"]), m["t"])
            failures[current] = m["err"] if m["err"] is not None else ""
        elif current is not None and line.startswith("        "):
            failures[current] += line.strip() + "\n"
        elif not _NOISE.match(line):
            raise AssertionError(f"promtool could not run the tests: {line}\n{output[:4000]}")
    if proc.returncode != 0 and not failures:
        raise AssertionError(f"promtool failed without test failures:\n{output[:4000]}")
    return proc.returncode, output, failures
