"""The terminal view of a demo run.

On a terminal: a block redrawn every second (replicas/ready/desired per role, trigger
values, queues, TTFT and ITL percentiles, load, the last scaling events). With
``--quiet`` or when stdout is not a terminal: one line every few seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

from scaler.sim.demo_run import DemoRun
from scaler.sim.fleet import ROLES, Fleet
from scaler.sim.keda_emulator import ScaledObjectEmulator
from scaler.sim.recorder import Recorder

LINE_EVERY_SECONDS = 5


def _num(value: float | None, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    if value is None:
        return "-"
    value *= scale
    if abs(value) >= 10000:
        return f"{value / 1000:.0f}k{unit}"
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}{unit}"
    return f"{value:.{digits}f}{unit}"


class View:
    def __init__(self, run: DemoRun, quiet: bool, out: TextIO | None = None) -> None:
        self.run = run
        self.out = out or sys.stdout
        self.live = not quiet and self.out.isatty()
        self._drawn = 0

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def banner(self) -> None:
        s = self.run.scenario
        phases = ", ".join(f"{p.name} {p.seconds:.0f}s @ {p.rate:g} req/s" for p in s.phases)
        self._print(
            f"keda-otel-scaler demo: scenario {s.name} ({s.duration:.0f}s: {phases})\n"
            f"  ScaledObjects from {self.run.manifests_dir}; KEDA/HPA timers x{s.time_scale:.3g}, "
            f"model latencies x{s.slowdown:g} ({s.profile.name})"
        )

    def update(self, rec: Recorder, emulators: Sequence[ScaledObjectEmulator], fleet: Fleet) -> None:
        if self.live:
            self._redraw(self._block(rec, emulators, fleet))
        elif rec.t and int(rec.t[-1]) % LINE_EVERY_SECONDS == 0:
            self._print(self._line(rec))

    def _line(self, rec: Recorder) -> str:
        parts = [f"[{rec.t[-1]:4.0f}s] {rec.phase[-1]:<20}"]
        for role in ROLES:
            r = rec.roles[role]
            trig = " ".join(f"{k}={_num(v[-1])}" for k, v in r["triggers"].items())
            parts.append(
                f"{role} {r['replicas'][-1]}/{r['ready'][-1]}r desired {r['desired'][-1]} q{r['queue'][-1]} "
                f"ttft90 {_num(r['ttft_p90'][-1], 's')} [{trig}]"
            )
        parts.append(f"itl90 {_num(rec.roles['decode']['itl_p90'][-1], 'ms', 1000)}")
        parts.append(f"{rec.load['requests_per_s'][-1]} req/s")
        return "  ".join(parts)

    def _block(self, rec: Recorder, emulators: Sequence[ScaledObjectEmulator], fleet: Fleet) -> list[str]:
        s = self.run.scenario
        index, phase = s.phase_at(rec.t[-1])
        lines = [
            f"t = {rec.t[-1]:5.0f}s / {s.duration:.0f}s   phase {index + 1}/{len(s.phases)}: {phase.name} "
            f"({phase.rate:g} req/s, {phase.prompt} prompts)",
            f"{'role':<8} {'replicas':>8} {'ready':>5} {'desired':>7} {'queue':>6} {'running':>7} "
            f"{'TTFT p50/p90':>14} {'ITL p50/p90':>14}  triggers (value/target)",
        ]
        targets: dict[str, Any] = {}
        for e in emulators:
            for state in e.triggers:
                targets[state.metric_name or state.trigger.name] = state.target
        for role in ROLES:
            r = rec.roles[role]
            trig = "  ".join(f"{k}={_num(v[-1])}/{_num(targets.get(k))}" for k, v in r["triggers"].items())
            ttft = f"{_num(r['ttft_p50'][-1], 's')}/{_num(r['ttft_p90'][-1], 's')}"
            itl = f"{_num(r['itl_p50'][-1], '', 1000, 1)}/{_num(r['itl_p90'][-1], 'ms', 1000, 1)}"
            lines.append(
                f"{role:<8} {r['replicas'][-1]:>8} {r['ready'][-1]:>5} {r['desired'][-1]:>7} {r['queue'][-1]:>6} "
                f"{r['running'][-1]:>7} {ttft:>14} {itl:>14}  {trig}"
            )
        lines.append(
            f"load: {rec.load['requests_per_s'][-1]} req/s, {_num(rec.load['prompt_tokens_per_s'][-1])} prompt tok/s;"
            f" gateway queue {len(fleet.gateway)}; failed {sum(rec.failures.values())}"
        )
        events = sorted((ev for e in emulators for ev in e.events), key=lambda ev: ev.t)[-4:]
        lines.append("recent scaling:" + ("" if events else " none yet"))
        lines += [f"  {ev.t:6.1f}s {ev.scaled_object}: {ev.message}" for ev in events]
        return lines

    def _redraw(self, lines: list[str]) -> None:
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        if len(lines) < self._drawn:
            self.out.write("\x1b[J")
        self.out.flush()
        self._drawn = len(lines)

    def finish(self, summary: dict[str, Any]) -> None:
        self._drawn = 0
        self._print("")
        for line in summary.get("text", []):
            self._print(line)
