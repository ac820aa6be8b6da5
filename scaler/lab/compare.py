"""A lab run against an earlier one (``evaluate --baseline``): seed by seed, what changed.

A change to a recipe (or to the planner) is judged on the same scenarios and seeds: every run
is deterministic per seed, so two reports that share a (scenario, profile, recipe, seed) can
be paired, and a difference is the change's, not the dice's. One :class:`Row` per scenario,
profile and recipe that both reports ran: the means over the seeds both ran, their
differences (window attainment in points, GPU-hours in per cent, scale events) and the pairs
themselves, since a mean over three seeds can hide one seed that moved the other way. Runs
that failed in either report are left out of the pairs and counted.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Key = tuple[str, str, str]
"""(scenario, profile, recipe). A run that failed once its scenario loaded is named as its
completed seeds are; one whose scenario did not load names only a profile given with
``--profiles`` ('' for the scenario's own; see :func:`matrix.run_job`)."""


class BaselineError(ValueError):
    """The baseline is not a readable ``report.json``."""


@dataclass(frozen=True)
class Pair:
    seed: int
    before: Mapping[str, Any]
    after: Mapping[str, Any]

    @property
    def identical(self) -> bool:
        return all(self.before.get(k) == self.after.get(k) for k in FIGURES)


FIGURES = ("window_attainment", "gpu_hours", "scale_events")


@dataclass(frozen=True)
class Row:
    key: Key
    pairs: tuple[Pair, ...]
    failed: int
    """Seeds both reports ran where a run failed in either."""

    def mean(self, side: str, figure: str) -> float:
        return statistics.fmean(float(getattr(p, side)[figure]) for p in self.pairs)

    @property
    def attainment_points(self) -> float:
        return 100 * (self.mean("after", "window_attainment") - self.mean("before", "window_attainment"))

    @property
    def gpu_hours_percent(self) -> float:
        before = self.mean("before", "gpu_hours")
        return 100 * (self.mean("after", "gpu_hours") / before - 1) if before > 0 else 0.0

    @property
    def events(self) -> float:
        return self.mean("after", "scale_events") - self.mean("before", "scale_events")

    @property
    def identical(self) -> bool:
        return all(p.identical for p in self.pairs)


def load(path: Path) -> list[dict[str, Any]]:
    """The runs of a ``report.json`` (or of the one in directory ``path``)."""
    file = path / "report.json" if path.is_dir() else path
    try:
        doc = json.loads(file.read_text())
    except OSError as exc:
        raise BaselineError(f"--baseline: cannot read {file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BaselineError(f"--baseline: {file} is not JSON: {exc}") from None
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if not isinstance(runs, list) or not all(_is_run(r) for r in runs):
        raise BaselineError(
            f"--baseline: {file} is not an evaluate report (expected runs[] with scenario, recipe, seed, ok "
            f"and, for a completed run, the numbers {', '.join(FIGURES)})"
        )
    return runs


def _is_run(run: Any) -> bool:
    return (
        isinstance(run, dict)
        and isinstance(run.get("scenario"), str)
        and isinstance(run.get("recipe"), str)
        and isinstance(run.get("profile", ""), str | None)
        and isinstance(run.get("seed"), int)
        and isinstance(run.get("ok"), bool)
        and (not run["ok"] or all(_is_number(run.get(figure)) for figure in FIGURES))
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _by_key(runs: Iterable[Mapping[str, Any]]) -> dict[Key, dict[int, Mapping[str, Any]]]:
    out: dict[Key, dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for r in runs:
        out[(r["scenario"], r.get("profile") or "", r["recipe"])][r["seed"]] = r
    return out


def compare(after: Iterable[Mapping[str, Any]], before: Iterable[Mapping[str, Any]]) -> tuple[list[Row], list[Key]]:
    """The rows both ran (sorted), and the keys only ``after`` ran (or ran on other seeds)."""
    new, old = _by_key(after), _by_key(before)
    rows: list[Row] = []
    unmatched: list[Key] = []
    for key in sorted(new):
        seeds = sorted(set(new[key]) & set(old.get(key, {})))
        pairs = [Pair(s, old[key][s], new[key][s]) for s in seeds if old[key][s]["ok"] and new[key][s]["ok"]]
        if pairs:
            rows.append(Row(key, tuple(pairs), len(seeds) - len(pairs)))
        else:
            unmatched.append(key)
    return rows, unmatched


def _name(key: Key) -> str:
    scenario, profile, recipe = key
    return f"{scenario}{'@' + profile if profile else ''} / {recipe}"


def _pair(p: Pair) -> str:
    if p.identical:
        return f"{p.seed}: identical"
    b, a = p.before, p.after
    return (
        f"{p.seed}: {b['window_attainment']:.1%} → {a['window_attainment']:.1%} · "
        f"{b['gpu_hours']:.3f} → {a['gpu_hours']:.3f} · {b['scale_events']} → {a['scale_events']}"
    )


@dataclass(frozen=True)
class Against:
    """A report's runs against the baseline's: what ``summary.md`` and ``report.json`` show."""

    rows: Sequence[Row]
    unmatched: Sequence[Key]
    """Scenario, profile and recipe this report ran that no seed of the baseline pairs with."""
    baseline: str
    """Where the baseline came from, as given."""

    def markdown(self) -> list[str]:
        """The summary's section on the baseline."""
        lines = [
            "## Against the baseline",
            "",
            f"Baseline: `{self.baseline}`. Per scenario and recipe, on the seeds both ran: the mean share of "
            "30-s windows meeting the SLO and its change in points, the mean GPU-hours and their change in "
            "per cent, the change in mean scale events, and each seed's pair (windows · GPU-hours · events, "
            "before → after). Every run is deterministic per seed: a difference is the change's.",
            "",
            "| scenario / recipe | seeds | windows | Δ points | GPU-hours | Δ % | Δ events | per seed |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            seeds = ", ".join(str(p.seed) for p in row.pairs) + (f" ({row.failed} failed)" if row.failed else "")
            detail = "identical" if row.identical else "; ".join(_pair(p) for p in row.pairs)
            lines.append(
                f"| {_name(row.key)} | {seeds} | {row.mean('after', 'window_attainment'):.1%} | "
                f"{row.attainment_points:+.2f} | {row.mean('after', 'gpu_hours'):.3f} | "
                f"{row.gpu_hours_percent:+.2f} | {row.events:+.1f} | {detail} |"
            )
        same = sum(1 for r in self.rows if r.identical)
        lines += ["", f"{len(self.rows)} compared, {same} identical, {len(self.rows) - same} changed."]
        if self.unmatched:
            names = ", ".join(f"`{_name(k)}`" for k in self.unmatched)
            lines += ["", f"Not in the baseline (no seed both ran without failing): {names}."]
        return lines

    def to_json(self) -> dict[str, Any]:
        """``report.json``'s ``baseline`` object."""
        return {
            "path": self.baseline,
            "rows": [
                {
                    "scenario": r.key[0],
                    "profile": r.key[1],
                    "recipe": r.key[2],
                    "seeds": [p.seed for p in r.pairs],
                    "failed": r.failed,
                    "window_attainment": r.mean("after", "window_attainment"),
                    "window_attainment_before": r.mean("before", "window_attainment"),
                    "gpu_hours": r.mean("after", "gpu_hours"),
                    "gpu_hours_before": r.mean("before", "gpu_hours"),
                    "scale_events": r.mean("after", "scale_events"),
                    "scale_events_before": r.mean("before", "scale_events"),
                    "identical": r.identical,
                }
                for r in self.rows
            ],
            "not_in_baseline": [{"scenario": k[0], "profile": k[1], "recipe": k[2]} for k in self.unmatched],
        }
