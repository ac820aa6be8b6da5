"""``keda-otel-scaler demo`` installed without its ``demo`` extra: it says so before any work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from scaler import extras

REPO = Path(__file__).resolve().parents[2]


def _without(module: str, tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import <module>`` fails as if it were not installed."""
    shim = tmp_path / "shim" / module
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")
    path = os.pathsep.join([str(tmp_path / "shim"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaler", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_report_without_matplotlib_ends_at_once_with_the_install_line(tmp_path: Path) -> None:
    report = tmp_path / "report"
    proc = _demo("--report", str(report), "--quiet", env=_without("matplotlib", tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "  pip install 'keda-otel-scaler[demo]'\n" in proc.stderr
    assert "matplotlib" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Before any work: no scaler started (it would log to report/scaler.log), nothing written.
    assert not report.exists()
    assert proc.stdout == ""


def test_the_check_passes_when_the_extra_is_installed() -> None:
    assert extras.missing(extras.REPORT_PLOT) == []
    assert extras.demo_problem(report=True) == ""
    # Without --report the demo imports nothing optional.
    assert extras.demo_problem(report=False) == ""


def test_the_checked_distributions_are_the_demo_extra() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extra = {
        re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0] for req in pyproject["project"]["optional-dependencies"]["demo"]
    }
    assert set(extras.REPORT_PLOT.values()) <= extra
    assert "[demo]" in extras.DEMO_INSTALL and pyproject["project"]["name"] in extras.DEMO_INSTALL
