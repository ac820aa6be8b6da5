"""The lab's outputs: ``report.json``, ``summary.md`` and one Pareto plot per scenario.

``summary.md`` has two tables. The overview: one row per scenario (and profile), one
column per recipe, each cell the window attainment and the GPU-hours (means over seeds).
The detail: one row per scenario and recipe with every figure; within each scenario the
best value of each column is in bold — the highest attainments; the fewest GPU-hours,
over-provisioned GPU-hours, scale events and recovery time among the recipes that meet the
SLO (a recipe that lets the SLO go is not cheap, it is broken). Then, where their runs are
there: each recipe's missed windows against the oracle without foresight's
(:func:`beyond_reactive`), the planner against its goals (:mod:`scaler.lab.goals`) and, with
``--baseline``, what changed (:mod:`scaler.lab.compare`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scaler import extras
from scaler.lab import goals
from scaler.lab.compare import Against
from scaler.lab.goals import REACTIVE, Verdict
from scaler.lab.runner import RunResult
from scaler.sim.scenario import Scenario

# (key, header, higher is better, format)
COLUMNS: tuple[tuple[str, str, bool, Callable[[float], str]], ...] = (
    ("ttft_attainment", "TTFT att.", True, lambda v: f"{v:.1%}"),
    ("itl_attainment", "ITL att.", True, lambda v: f"{v:.1%}"),
    ("window_attainment", "30-s windows", True, lambda v: f"{v:.1%}"),
    ("gpu_hours", "GPU-h", False, lambda v: f"{v:.2f}"),
    ("gpu_hours_prefill", "GPU-h P", False, lambda v: f"{v:.2f}"),
    ("gpu_hours_decode", "GPU-h D", False, lambda v: f"{v:.2f}"),
    ("over_provisioned_gpu_hours", "over-prov. GPU-h", False, lambda v: f"{v:.2f}"),
    ("scale_events", "scale events P/D", False, lambda v: f"{v:.0f}"),
    ("recovery", "recovery", False, lambda v: "-" if math.isnan(v) else f"{v:.0f} s"),
)


def _recovery(r: RunResult) -> float:
    """Mean time to recover over the scenario's load steps (inf if one never recovered)."""
    if not r.recovery_seconds:
        return math.nan
    if any(v is None for v in r.recovery_seconds):
        return math.inf
    return statistics.fmean(v for v in r.recovery_seconds if v is not None)


def aggregate(runs: Sequence[RunResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """Means over seeds: ``{scenario@profile: {recipe: {figure: value, ...}}}``."""
    groups: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for r in runs:
        groups[(r.key, r.recipe)].append(r)
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (scenario, recipe), rs in groups.items():
        ok = [r for r in rs if r.ok]
        cell: dict[str, Any] = {"runs": len(rs), "ok": len(ok), "errors": [r.error for r in rs if not r.ok]}
        if ok:
            for key, *_ in COLUMNS:
                values = [_recovery(r) if key == "recovery" else float(getattr(r, key)) for r in ok]
                cell[key] = statistics.fmean(values) if not any(math.isnan(v) for v in values) else math.nan
            cell["scale_events_split"] = (
                statistics.fmean(r.scale_events_prefill for r in ok),
                statistics.fmean(r.scale_events_decode for r in ok),
            )
            cell["meets_slo"] = all(r.meets_slo for r in ok)
            cell["notes"] = sorted({r.note for r in ok if r.note})
        out[scenario][recipe] = cell
    return out


def _best(cells: dict[str, dict[str, Any]], key: str, higher: bool) -> set[str]:
    pool = {name: c for name, c in cells.items() if c.get("ok") and key in c and not math.isnan(c[key])}
    if not higher:
        pool = {n: c for n, c in pool.items() if c.get("meets_slo")}
    if not pool:
        return set()
    pick = max if higher else min
    best = pick(c[key] for c in pool.values())
    return {n for n, c in pool.items() if math.isclose(c[key], best, rel_tol=1e-9, abs_tol=1e-9)}


def _cell(cell: dict[str, Any], key: str, fmt: Callable[[float], str], bold: bool) -> str:
    if not cell.get("ok"):
        return "error"
    if key == "scale_events":
        p, d = cell["scale_events_split"]
        text = f"{p:.0f}/{d:.0f}"
    elif key == "recovery" and math.isinf(cell[key]):
        text = "not recovered"
    else:
        text = fmt(cell[key])
    return f"**{text}**" if bold else text


def _seeds(meta: dict[str, Any]) -> str:
    numbers = meta["seed_numbers"]
    if numbers == list(range(1, len(numbers) + 1)):
        return f"{len(numbers)} seed(s)"
    return f"{len(numbers)} seed(s): {', '.join(str(n) for n in numbers)}"


def markdown(
    runs: Sequence[RunResult],
    scenarios: dict[str, Scenario],
    recipes: Sequence[str],
    meta: dict[str, Any],
    against: Against | None = None,
    verdicts: Sequence[Verdict] = (),
    borrowed: Sequence[RunResult] = (),
) -> str:
    table = aggregate(runs)
    lines = [
        "# Evaluation lab: how good is the scaling?",
        "",
        f"{meta['runs']} runs ({meta['failed']} failed), {_seeds(meta)}, "
        f"{meta['simulated_hours']:.1f} simulated hours in {meta['wall_seconds']:.0f} s of wall clock "
        f"with {meta['jobs']} worker(s) ({meta['speed']:.0f}x real time per core).",
        *(["", f"Scaler: {meta['scaler']} (`runs[].ha` in report.json)."] if meta.get("scaler") else []),
        "",
        "Cells: share of 30-s windows meeting the SLO (TTFT p90 and ITL p90) · GPU-hours. "
        "Means over seeds. **Bold**: best of the row (highest window attainment; among the recipes "
        "that meet the SLO, fewest GPU-hours).",
        "",
        "| scenario | profile | " + " | ".join(recipes) + " |",
        "|---|---|" + "---|" * len(recipes),
    ]
    for key in sorted(table):
        cells = table[key]
        win, cheap = _best(cells, "window_attainment", True), _best(cells, "gpu_hours", False)
        s = scenarios.get(key)
        row = [key.split("@")[0], s.profile.name if s else key.partition("@")[2]]
        for recipe in recipes:
            c = cells.get(recipe)
            if c is None:
                row.append("")
            elif not c.get("ok"):
                row.append("error")
            else:
                w = f"{c['window_attainment']:.0%}"
                g = f"{c['gpu_hours']:.2f}"
                row.append(f"{'**' + w + '**' if recipe in win else w} · {'**' + g + '**' if recipe in cheap else g}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Detail", ""]
    lines += [
        "Request-level attainment (failed and timed-out requests are misses), share of 30-s windows meeting the "
        "SLO, GPU-hours (total, prefill, decode), GPU-hours above the oracle's desired count, scale events "
        "(prefill/decode), mean time to recover after the scenario's load steps. **Bold**: best per column "
        "within the scenario (costs and recovery: among recipes meeting the SLO).",
        "",
    ]
    header = "| scenario | recipe | " + " | ".join(h for _, h, _, _ in COLUMNS) + " | meets SLO |"
    lines += [header, "|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for key in sorted(table):
        cells = table[key]
        best = {col: _best(cells, col, higher) for col, _, higher, _ in COLUMNS}
        for recipe in [r for r in recipes if r in cells]:
            c = cells[recipe]
            values = [_cell(c, col, fmt, recipe in best[col]) for col, _, _, fmt in COLUMNS]
            meets = "yes" if c.get("meets_slo") else ("error" if not c.get("ok") else "no")
            lines.append(f"| {key} | {recipe} | " + " | ".join(values) + f" | {meets} |")
    lines += beyond_reactive(runs)
    lines += goals.markdown(verdicts, borrowed)
    if against is not None:
        lines += ["", *against.markdown()]
    errors = [r for r in runs if not r.ok]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- `{r.key}` / `{r.recipe}` / seed {r.seed}: {(r.error or '').splitlines()[0]}" for r in errors]
    notes = sorted({f"`{r.key}` / `{r.recipe}`: {r.note}" for r in runs if r.note})
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    if meta.get("plots"):
        lines += ["", "## Pareto plots", "", "GPU-hours against the share of 30-s windows meeting the SLO, a point "
                  "per recipe and seed; up and left is better.", ""]  # fmt: skip
        lines += [f"![{p}]({p})" for p in meta["plots"] if p != "pareto-all.png"]
    elif meta.get("plots_missing"):
        lines += ["", f"No plots: {meta['plots_missing']}."]
    return "\n".join(lines) + "\n"


def beyond_reactive(runs: Sequence[RunResult]) -> list[str]:
    """``summary.md``'s section comparing each recipe's missed windows with those of
    :data:`REACTIVE` on the same scenario and seed: the ones it met (where a reactive recipe can
    still gain), the ones both missed, and the ones only it missed. Empty without its runs."""
    reference = {(r.key, r.seed): set(r.missed_windows) for r in runs if r.recipe == REACTIVE and r.ok}
    groups: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    for r in runs:
        theirs = reference.get((r.key, r.seed))
        if r.recipe == REACTIVE or not r.ok or theirs is None:
            continue
        mine = set(r.missed_windows)
        groups[(r.key, r.recipe)].append((len(mine - theirs), len(mine & theirs), len(theirs - mine)))
    if not groups:
        return []
    lines = [
        "",
        f"## Against the oracle without foresight ({REACTIVE})",
        "",
        f"Missed 30-s windows per run, means over the seeds both ran: those {REACTIVE} met (with no "
        "foresight, only the present load known the moment it changes, and the oracle's sizing; a recipe "
        "that measures the load learns a change a rate window and a sync later), those both missed (lost "
        f"to the start-up after a rise, short of standing headroom), and those only {REACTIVE} missed.",
        "",
        f"| scenario | recipe | seeds | missed, {REACTIVE} met | missed by both | met, {REACTIVE} missed |",
        "|---|---|---|---|---|---|",
    ]
    for (key, recipe), rows in sorted(groups.items()):
        a, b, c = (statistics.fmean(col) for col in zip(*rows, strict=True))
        lines.append(f"| {key} | {recipe} | {len(rows)} | {a:.1f} | {b:.1f} | {c:.1f} |")
    return lines


def pareto_plots(runs: Sequence[RunResult], directory: Path) -> list[str]:
    """One PNG per scenario — GPU-hours vs window attainment, a point per recipe and seed —
    and all of them on one page (``pareto-all.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    by_scenario: dict[str, list[RunResult]] = defaultdict(list)
    for r in runs:
        if r.ok:
            by_scenario[r.key].append(r)
    recipes = sorted({r.recipe for r in runs if r.ok})
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(recipes)}
    names: list[str] = []
    for key, rs in sorted(by_scenario.items()):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        _pareto_axes(ax, key, rs, colors)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        name = f"pareto-{key.replace('@', '-')}.png"
        fig.savefig(directory / name, dpi=100)
        plt.close(fig)
        names.append(name)
    if by_scenario:
        cols = min(4, len(by_scenario))
        rows = -(-len(by_scenario) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows + 0.6), squeeze=False)
        for ax, (key, rs) in zip(axes.flat, sorted(by_scenario.items()), strict=False):
            _pareto_axes(ax, key, rs, colors)
        for ax in list(axes.flat)[len(by_scenario) :]:
            ax.axis("off")
        handles = [Line2D([], [], marker="o", ls="", color=colors[n], label=n) for n in recipes]
        fig.legend(handles=handles, loc="lower center", ncol=len(recipes), fontsize=9, frameon=False)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        fig.savefig(directory / "pareto-all.png", dpi=90)
        plt.close(fig)
        names.append("pareto-all.png")
    return names


def _pareto_axes(ax: Any, key: str, rs: Sequence[RunResult], colors: dict[str, Any]) -> None:
    for recipe in sorted({r.recipe for r in rs}):
        xs = [r.gpu_hours for r in rs if r.recipe == recipe]
        ys = [r.window_attainment for r in rs if r.recipe == recipe]
        ax.scatter(xs, ys, color=colors[recipe], label=recipe, s=36, zorder=3)
    frontier = _frontier([(r.gpu_hours, r.window_attainment) for r in rs])
    fx, fy = [x for x, _ in frontier], [y for _, y in frontier]
    ax.step([*fx, max(r.gpu_hours for r in rs)], [*fy, fy[-1]], where="post", color="grey", lw=1, ls="--",
            label="Pareto front")  # fmt: skip
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("30-s windows meeting the SLO")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(key, fontsize=10)
    ax.grid(alpha=0.3)


def _frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    best, out = -1.0, []
    for x, y in sorted(points):
        if y > best:
            out.append((x, y))
            best = y
    return out


def write(
    directory: Path,
    runs: Sequence[RunResult],
    scenarios: dict[str, Scenario],
    recipes: Sequence[str],
    meta: dict[str, Any],
    against: Against | None = None,
    borrowed: Sequence[RunResult] = (),
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    ordered = sorted(runs, key=lambda r: (r.scenario, r.profile, r.recipe, r.seed))
    verdicts = goals.judge([*ordered, *borrowed])  # the goals of summary.md and report.json, judged once
    if absent := extras.missing(extras.REPORT_PLOT):
        meta["plots_missing"] = f"{', '.join(absent)} (the demo extra) is not installed: {extras.DEMO_INSTALL}"
    else:
        meta["plots"] = pareto_plots(ordered, directory)
    doc = {
        "runs": [r.to_json() for r in ordered],
        "matrix": meta,
        "scenarios": {
            key: {
                "name": s.name,
                "profile": s.profile.name,
                "source": s.source,
                "description": s.description,
                "duration_seconds": s.duration,
                "slo": {
                    "ttft_p90_seconds": s.slo.ttft_p90_seconds,
                    "itl_p90_seconds": s.slo.itl_p90_seconds,
                    "goal": s.slo.goal,
                },
                "limits": {role: list(v) for role, v in s.limits.items()},
                "phases": [{"name": p.name, "seconds": p.seconds, "rate": round(p.rate, 3)} for p in s.phases],
            }
            for key, s in sorted(scenarios.items())
        },
        "summary": aggregate(ordered),
        "goals": [v.to_json() for v in verdicts if v.pairs],
        **({"baseline": against.to_json()} if against is not None else {}),
    }
    paths = [directory / "report.json", directory / "summary.md"]
    paths[0].write_text(json.dumps(_finite(doc), indent=1, default=_json_default, allow_nan=False) + "\n")
    paths[1].write_text(markdown(ordered, scenarios, recipes, meta, against, verdicts, borrowed))
    return paths + [directory / p for p in meta.get("plots", [])]


def _finite(value: Any) -> Any:
    """JSON has no infinities or NaN: a recovery that never happened is null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
