"""``python -m bench [--quick] [--only FIGURE ...]`` → ``bench/RESULTS.md``.

Figures: ingest, vllm, query, memory, reaction, prometheus, warmstart, streams, profile (see
bench/phases.py), the planner's decision time (planner: see bench/planner.py), and the
evaluation lab's evaluate (a one-hour scenario, the default matrix) and evaluate-full (the
``--full`` matrix; about ten times the default one) — see bench/evaluate.py. The service
figures take several minutes on 2 cores, the lab's most of an hour; ``--quick`` uses small
sizes for development, skips the matrices, and writes ``bench/RESULTS-dev.md`` unless
``--output`` says otherwise (so does ``--only``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import evaluate, phases, planner
from bench.profiling import py_spy
from bench.report import Report

FIGURES = (
    "ingest", "vllm", "query", "memory", "reaction", "prometheus", "warmstart", "streams", "profile", "planner",
    "evaluate", "evaluate-full",
)  # fmt: skip
HERE = Path(__file__).parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (development)")
    parser.add_argument(
        "--only", action="append", choices=FIGURES, metavar="FIGURE", help=f"run only these ({', '.join(FIGURES)})"
    )
    parser.add_argument("--output", type=Path, default=None, help="where to write the report")
    return parser


def _importable() -> str | None:
    try:
        import scaler.app  # noqa: F401
    except ImportError as exc:
        return f"the service does not import yet: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers and Prometheus this run started are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    figures = set(args.only or FIGURES)
    output = args.output or HERE / ("RESULTS-dev.md" if args.quick or args.only else "RESULTS.md")
    problem = _importable()
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    sizes = phases.Sizes.of(args.quick)
    report = Report(quick=args.quick)
    started = time.monotonic()
    if "profile" in figures and py_spy() is None:
        report.skipped.append("profiles: py-spy is not installed (pip install py-spy)")
    if figures & {"ingest", "profile"}:
        print("== ingest", flush=True)
        phases.ingest_phase(report, sizes, profile="profile" in figures)
    if "vllm" in figures:
        print("== vLLM-shaped ingest and GetMetrics under load (native and reference paths)", flush=True)
        phases.vllm_phase(report, sizes, profile="profile" in figures and py_spy() is not None)
    if figures & {"ingest", "query", "memory", "reaction", "prometheus", "warmstart", "profile"}:
        print(f"== {sizes.big_series // 1000}k-series store", flush=True)
        phases.store_phase(report, sizes, figures)
    if "query" in figures:
        print("== engine in-process", flush=True)
        phases.engine_phase(report, sizes)
    if "streams" in figures:
        print(f"== {sizes.streams:,} StreamIsActive streams", flush=True)
        phases.streams_phase(report, sizes)
    if "planner" in figures:
        print("== the planner's decision time", flush=True)
        planner.phase(report, sizes.planner_pods, sizes.planner_calls)
    if "evaluate" in figures:
        print("== evaluation lab: a one-hour scenario", flush=True)
        evaluate.speed_phase(report)
        if not args.quick:
            print("== evaluation lab: the default matrix", flush=True)
            evaluate.matrix_phase(report, full=False)
    if "evaluate-full" in figures and not args.quick:
        print("== evaluation lab: the --full matrix", flush=True)
        evaluate.matrix_phase(report, full=True)
    report.write(output, time.monotonic() - started)
    print(f"wrote {output} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
