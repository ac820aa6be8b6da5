"""keda-otel-scaler evaluate: score autoscaling recipes in the evaluation lab (docs/lab.md).

Arguments name scenarios (a YAML file, a directory of them, or the stem of a built-in one)
and recipes (a recipe directory, a directory of recipe directories, or the name of a
built-in one); by default every built-in scenario on its own profile and every built-in
recipe, one seed. ``--full`` adds the other profiles and three seeds. ``--replicas N`` runs
the scaler as N replicas (the high-availability layout: every replica gets every OTLP
export, KEDA's calls go round-robin with one retry), ``--kill-replica-at F`` kills replica
1 (the only one with N=1) at F × each scenario's duration and restarts it
``--restart-after`` seconds later, warmed from a peer's snapshot (docs/lab.md). ``--seeds``
takes a count (1..N), a range (``4-6``) or a list (``4,6``): held-out seeds run on their own.
``--baseline`` pairs every run with an earlier report's run of the same scenario, recipe and
seed and adds what changed to the summary (:mod:`scaler.lab.compare`); its runs of the recipes
not run again join the judge of the planner's goals (:mod:`scaler.lab.goals`). Exit code 0
when every run completed, 1 when any failed (the report says which and why), 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from importlib import resources
from pathlib import Path
from types import FrameType

from scaler import extras
from scaler.lab import compare, recipes
from scaler.lab.replicas import Failover
from scaler.sim import profiles

DEFAULT_REPORT = "evaluate-report"
FULL_SEEDS = 3


def builtin_scenarios() -> list[Path]:
    base = Path(str(resources.files("scaler.lab").joinpath("scenarios")))
    return sorted(base.glob("*.yaml"))


class UsageError(ValueError):
    """A command-line argument names nothing usable."""


def resolve_scenarios(args: list[str] | None) -> list[str]:
    if not args:
        return [str(p) for p in builtin_scenarios()]
    builtin = {p.stem: p for p in builtin_scenarios()}
    out: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
            if not found:
                raise UsageError(f"--scenarios: {arg} has no *.yaml scenario files")
            out += [str(p) for p in found]
        elif path.exists() or path.suffix in (".yaml", ".yml"):
            out.append(str(path))  # a missing file is reported as a failed scenario, naming it
        elif arg in builtin:
            out.append(str(builtin[arg]))
        else:
            raise UsageError(
                f"--scenarios: {arg} is not a file, a directory or a built-in scenario ({', '.join(sorted(builtin))})"
            )
    return out


def _is_recipe(path: Path) -> bool:
    return any(path.glob("*.yaml")) or any(path.glob("*.yml"))


def resolve_recipes(args: list[str] | None) -> list[Path]:
    if not args:
        return recipes.builtin()
    builtin = {p.name: p for p in recipes.builtin()}
    out: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            if _is_recipe(path):
                out.append(path)
            else:
                subdirs = sorted(p for p in path.iterdir() if p.is_dir() and _is_recipe(p))
                if not subdirs:
                    raise UsageError(f"--recipes: {arg} is neither a recipe nor a directory of recipes")
                out += subdirs
        elif arg in builtin:
            out.append(builtin[arg])
        else:
            raise UsageError(f"--recipes: {arg} is not a directory or a built-in recipe ({', '.join(sorted(builtin))})")
    names = [p.name for p in out]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UsageError(f"--recipes: two recipes are named {duplicate!r} (recipes are named by their directory)")
    return out


def parse_seeds(text: str) -> list[int]:
    """``N`` (1..N), ``A-B`` (A..B) or ``A,B,...``: the seeds, ascending, each >= 1."""
    first, dash, last = text.partition("-")
    try:
        if "," in text:
            seeds = {int(part) for part in text.split(",")}
        elif dash and first:
            seeds = set(range(int(first), int(last) + 1))
        else:
            seeds = set(range(1, int(text) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N, A-B or A,B,... (whole numbers)") from None
    if not seeds or min(seeds) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: no seeds (seeds are >= 1, and a range's first <= its last)")
    return sorted(seeds)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenarios",
        nargs="+",
        metavar="PATH",
        help="scenario files, directories or built-in names (default: every built-in scenario)",
    )
    parser.add_argument(
        "--recipes",
        nargs="+",
        metavar="DIR",
        help="recipe directories, directories of recipes or built-in names (default: every built-in recipe)",
    )
    parser.add_argument(
        "--seeds",
        type=parse_seeds,
        default=None,
        metavar="N|A-B|A,B",
        help="seeds: 1..N, A..B or a list, e.g. 4-6 for held-out seeds (default 1; 3 with --full)",
    )
    parser.add_argument(
        "--report",
        default=DEFAULT_REPORT,
        metavar="DIR",
        help=f"directory for report.json, summary.md and the plots (default: {DEFAULT_REPORT})",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, metavar="N", help="worker processes (default: the number of CPUs)"
    )
    parser.add_argument(
        "--profiles",
        nargs="+",
        metavar="NAME",
        default=[],
        help=f"also run every scenario on these profiles ({', '.join(profiles.library())})",
    )
    parser.add_argument("--full", action="store_true", help=f"every scenario on every profile, {FULL_SEEDS} seeds")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="REPORT",
        help="an earlier report.json (or its directory): pair each run with its run of the same seed there "
        "and add what changed to summary.md",
    )
    ha = parser.add_argument_group(
        "high availability", "ScaledObject recipes only: fixed fleets and the oracle ask no scaler"
    )
    ha.add_argument(
        "--replicas", type=int, default=1, metavar="N", help="scaler replicas, each fed every export (default 1)"
    )
    ha.add_argument(
        "--kill-replica-at",
        type=float,
        default=None,
        metavar="F",
        help="kill replica 1 (0 with --replicas 1) at F x the scenario's duration, 0 <= F < 1 (e.g. 0.5: halfway)",
    )
    ha.add_argument(
        "--restart-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="restart the killed replica this long after the kill, warmed from a peer's snapshot (default 30)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def main(args: argparse.Namespace) -> int:
    from scaler.lab import goals, matrix, report  # the scaler's core: only when evaluating

    try:
        scenario_paths = resolve_scenarios(args.scenarios)
        recipe_dirs = resolve_recipes(args.recipes)
        extra = list(profiles.library()) if args.full else list(args.profiles)
        for name in extra:
            profiles.named(name, "--profiles")
    except (UsageError, profiles.ProfileError) as exc:
        print(f"keda-otel-scaler evaluate: {exc}", file=sys.stderr)
        return 2
    seeds = args.seeds if args.seeds is not None else list(range(1, (FULL_SEEDS if args.full else 1) + 1))
    if args.jobs is not None and args.jobs < 1:
        print("keda-otel-scaler evaluate: --jobs must be >= 1", file=sys.stderr)
        return 2
    try:
        baseline = compare.load(args.baseline) if args.baseline is not None else None
    except compare.BaselineError as exc:
        print(f"keda-otel-scaler evaluate: {exc}", file=sys.stderr)
        return 2
    try:
        failover = failover_of(args)
    except ValueError as exc:
        print(f"keda-otel-scaler evaluate: {exc}", file=sys.stderr)
        return 2
    workers = args.jobs or os.cpu_count() or 1
    if absent := extras.missing(extras.REPORT_PLOT):
        print(
            f"keda-otel-scaler evaluate: no Pareto plots: {', '.join(absent)} (the demo extra) is not installed; "
            f"report.json and summary.md are written. For the plots: {extras.DEMO_INSTALL}",
            file=sys.stderr,
        )
    started, cpu = time.monotonic(), time.process_time()
    planned = matrix.plan(scenario_paths, recipe_dirs, seeds, extra, failover)
    progress = matrix.Progress(len(planned.jobs), quiet=args.quiet)
    done: list[matrix.RunResult] = []

    def finished(result: matrix.RunResult) -> None:
        done.append(result)
        progress.update(result)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    interrupted = False
    try:
        matrix.execute(planned.jobs, workers, finished)
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted: writing the {len(done)} finished runs", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    runs = planned.failed + done
    wall = time.monotonic() - started
    simulated = sum(r.simulated_seconds for r in runs if r.ok)
    cpu_total = sum(r.cpu_seconds for r in runs if r.ok)
    meta = {
        "runs": len(runs),
        "failed": sum(1 for r in runs if not r.ok),
        "seeds": len(seeds),
        "seed_numbers": seeds,
        "jobs": workers,
        "profiles": sorted({r.profile for r in runs if r.profile}),
        "scenario_files": scenario_paths,
        "recipe_dirs": [str(p) for p in recipe_dirs],
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu_total + time.process_time() - cpu, 1),
        "simulated_hours": simulated / 3600,
        "speed": simulated / cpu_total if cpu_total else 0.0,
        "interrupted": interrupted,
    }
    if failover is not None:
        meta["scaler"] = failover.describe()
    against, borrowed = None, []
    if baseline is not None:
        rows, unmatched = compare.compare([r.to_json() for r in runs], baseline)
        against = compare.Against(rows, unmatched, str(args.baseline))
        borrowed = goals.borrow(runs, baseline)
    names = [p.name for p in recipe_dirs]
    paths = report.write(Path(args.report), runs, planned.scenarios, names, meta, against, borrowed)
    if not args.quiet:
        if against is not None:
            print("\n".join(against.markdown()))
        print(f"report: {', '.join(str(p) for p in paths[:2])} (+{len(paths) - 2} plots)")
    for r in runs:
        if not r.ok:
            print(
                f"failed: {r.scenario} / {r.recipe} / seed {r.seed}: {(r.error or '').splitlines()[0]}", file=sys.stderr
            )
    if interrupted:
        return 130
    return 1 if meta["failed"] else 0


def failover_of(args: argparse.Namespace) -> Failover | None:
    """The replicas and the kill the flags ask for; None for the default single scaler.
    ValueError names the flag that is out of range."""
    if args.replicas == 1 and args.kill_replica_at is None:
        return None
    return Failover(args.replicas, args.kill_replica_at, args.restart_after)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
