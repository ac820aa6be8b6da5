"""Figures of the evaluation lab (``keda-otel-scaler evaluate``): speed against real time.

* one-hour scenario, one run: the ``azure-mix`` scenario (an hour of the Azure trace's
  shapes, ~40 req/s, 137k requests) with the ``shipped`` recipe (the whole scaler path:
  OTLP ingestion, queries, the KEDA servicer, KEDA/HPA emulation) and with ``static-peak``
  (the fleet alone), each timed in CPU seconds of one process: the ratio is simulated
  time / CPU time (target >= 200x, i.e. <= 18 s for the hour), with a py-spy profile;
* the default matrix (every built-in scenario on its profile, every recipe, one seed) and
  the ``--full`` matrix (also the other two profiles, three seeds), each run as the
  command a user runs (``evaluate --jobs 2``): wall-clock seconds (target for the default
  matrix: <= 600 s on 2 cores) and the simulated hours per wall-clock hour.

The machine is shared: wall-clock figures include other processes' load (the load average
is in the machine note); the CPU-time ratio does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.profiling import PROFILE_DIR, hotspots, markdown, py_spy
from bench.report import Report, Row

SPEED_TARGET = 200.0
MATRIX_TARGET_SECONDS = 600.0


_ONE_RUN = (
    "import json, sys\n"
    "from scaler.lab import matrix, recipes, runner\n"
    "s = matrix.load_scenario(str(sys.argv[1]))\n"
    "r = runner.simulate(s, recipes.load(recipes.builtin_dir() / sys.argv[2]), 1)\n"
    "print(json.dumps([r.simulated_seconds, r.cpu_seconds, r.requests]))\n"
)


def _command(recipe: str) -> list[str]:
    from scaler.lab import evaluate

    (scenario,) = [p for p in evaluate.builtin_scenarios() if p.stem == "azure-mix"]
    return [sys.executable, "-c", _ONE_RUN, str(scenario), recipe]


def _one_run(recipe: str) -> tuple[float, float, int]:
    """(simulated seconds, CPU seconds, requests) of one run in a fresh process."""
    out = subprocess.run(_command(recipe), check=True, capture_output=True, text=True).stdout
    simulated, cpu, requests = json.loads(out.strip().splitlines()[-1])
    return float(simulated), float(cpu), int(requests)


def _profile(report: Report, recipe: str) -> None:
    """Where a run's time goes (a separate run under py-spy, so the timed one is unperturbed)."""
    exe = py_spy()
    if exe is None:
        report.skipped.append("evaluate profile: py-spy is not installed")
        return
    PROFILE_DIR.mkdir(exist_ok=True)
    path = PROFILE_DIR / f"evaluate-{recipe}.txt"
    cmd = [exe, "record", "--rate", "200", "--format", "raw", "--output", str(path), "--", *_command(recipe)]
    subprocess.run(cmd, check=True, capture_output=True)
    profile = hotspots(path, top=15)
    report.hotspots += markdown(f"evaluate: azure-mix with {recipe} (one process, virtual time)", profile)


def speed_phase(report: Report) -> None:
    for recipe, what in (("shipped", "KEDA + the scaler in-process"), ("static-peak", "the fleet alone")):
        simulated, cpu, requests = _one_run(recipe)
        ratio = simulated / cpu
        report.add(
            Row(
                f"evaluate: a one-hour scenario ({recipe}: {what}), simulated time / CPU time",
                f"{cpu:.1f} s CPU for {simulated / 3600:.1f} h",
                f"{simulated:.0f} s real time",
                ratio,
                f">= {SPEED_TARGET:.0f}x (<= {3600 / SPEED_TARGET:.0f} s per hour)",
                ratio >= SPEED_TARGET,
            )
        )
        report.note(f"evaluate {recipe} on azure-mix: {requests} requests, {cpu / requests * 1e6:.0f} us CPU each")
    _profile(report, "shipped")


def _matrix(args: list[str]) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as directory:
        started = time.monotonic()
        cmd = [sys.executable, "-m", "scaler", "evaluate", "--jobs", "2", "--quiet", "--report", directory, *args]
        subprocess.run(cmd, check=True)
        wall = time.monotonic() - started
        meta: dict[str, float] = json.loads((Path(directory) / "report.json").read_text())["matrix"]
    return wall, meta


def matrix_phase(report: Report, full: bool) -> None:
    name = "--full matrix (3 profiles, 3 seeds)" if full else "default matrix (each scenario on its profile, 1 seed)"
    wall, meta = _matrix(["--full"] if full else [])
    simulated_hours = float(meta["simulated_hours"])
    report.add(
        Row(
            f"evaluate: {name}, 2 workers",
            f"{wall:.0f} s wall ({int(meta['runs'])} runs, {simulated_hours:.1f} simulated h)",
            f"{simulated_hours * 3600:.0f} s real time",
            simulated_hours * 3600 / wall,
            "-" if full else f"<= {MATRIX_TARGET_SECONDS:.0f} s wall",
            None if full else wall <= MATRIX_TARGET_SECONDS,
        )
    )
    report.note(
        f"evaluate {name}: {meta['cpu_seconds']:.0f} CPU-s in total, {meta['speed']:.0f}x real time per core; "
        f"{int(meta['failed'])} failed runs"
    )
