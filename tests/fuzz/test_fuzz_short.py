"""A short fuzzing run of every target, as part of the normal suite (``make fuzz`` runs long).

Each target runs for a few seconds from its generated seeds in its own process. A failure
shows the end of the fuzzer's output: the exception, the input and the path of the saved
crash file, which ``python -m tests.fuzz TARGET FILE`` replays.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.__main__ import TARGETS

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 5
"""Per target; with start-up and the seed corpus each takes about 7 s of wall time."""


@pytest.mark.parametrize("target", TARGETS)
def test_short_fuzz_run_finds_nothing(target: str) -> None:
    command = [sys.executable, "-m", "tests.fuzz", target, "--seconds", str(SECONDS), "--quiet"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, errors="replace", timeout=120, check=False)
    output = run.stderr + run.stdout
    assert run.returncode == 0, f"{' '.join(command[1:])} failed (exit {run.returncode}):\n" + "\n".join(
        output.splitlines()[-70:]
    )
    assert re.search(rf"^{target}\s+ok\s+\d+", run.stdout, re.MULTILINE), run.stdout
