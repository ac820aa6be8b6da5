"""Sampling profiles of the server process with py-spy, reduced to the top functions.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;… count``); a function's
*self* share counts the samples where it is the innermost frame, its *total* share the samples
where it appears anywhere on the stack.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PROFILE_DIR = Path(__file__).parent / "profiles"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy") or shutil.which(str(Path(sys.executable).parent / "py-spy"))
    return found


class Recorder:
    """``py-spy record`` of ``pid`` into ``PROFILE_DIR/<name>.txt`` until :meth:`stop`."""

    def __init__(self, pid: int, name: str, rate: int = 200) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        PROFILE_DIR.mkdir(exist_ok=True)
        self.path = PROFILE_DIR / f"{name}.txt"
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--native",
                "--format",
                "raw",
                "--output",
                str(self.path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> Path:
        self.proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
        _, err = self.proc.communicate(timeout=60)
        if not self.path.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")
        return self.path


@dataclass(frozen=True)
class Hotspot:
    function: str
    self_pct: float
    total_pct: float


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.split("/main/", 1)[-1]
    return f"{match['func']} ({path})"


@dataclass(frozen=True)
class Profile:
    spots: list[Hotspot]
    busy: int
    """Samples of the event-loop thread doing work (not waiting in ``select``)."""
    idle: int
    other: int
    """Samples of other threads (gRPC's poller, the C core), not in the percentages."""


def _stacks(path: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            out.append((stack.split(";"), int(count_text)))
    return out


def hotspots(path: Path, top: int = 12) -> Profile:
    """The ``top`` functions by self time on the event-loop thread while it is busy."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    busy = idle = other = 0
    for raw, count in _stacks(path):
        if not any("_run_once" in f for f in raw):
            other += count
            continue
        if any("Selector.select" in f for f in raw):
            idle += count
            continue
        frames = [_short(f) for f in raw if f]
        busy += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    spots = [Hotspot(f, 100 * c / busy, 100 * total[f] / busy) for f, c in own.most_common(top)] if busy else []
    return Profile(spots, busy, idle, other)


def inclusive(path: Path, names: list[str]) -> dict[str, float]:
    """Share (%) of the busy event-loop samples whose stack passes through each named function."""
    hits: Counter[str] = Counter()
    busy = 0
    for raw, count in _stacks(path):
        stack = ";".join(raw)
        if "_run_once" not in stack or "Selector.select" in stack:
            continue
        busy += count
        for name in names:
            if name in stack:
                hits[name] += count
    return {name: 100 * hits[name] / busy if busy else 0.0 for name in names}


def markdown(title: str, profile: Profile, extra: dict[str, float] | None = None) -> list[str]:
    loop = profile.busy + profile.idle
    lines = [
        f"### {title}",
        "",
        f"Event-loop thread busy in {profile.busy} of {loop} samples ({100 * profile.busy / max(loop, 1):.0f}%); "
        f"{profile.other} samples in other threads are left out. Shares are of the busy samples "
        "(py-spy --native: C frames such as the cyclic GC show up by name).",
        "",
        "| function | self % | total % |",
        "|---|---|---|",
    ]
    lines += [f"| `{s.function}` | {s.self_pct:.1f} | {s.total_pct:.1f} |" for s in profile.spots]
    if extra:
        lines += ["", "Inclusive shares: " + ", ".join(f"`{k}` {v:.1f}%" for k, v in extra.items())]
    return [*lines, ""]
