"""Optional dependencies (``pip install 'keda-otel-scaler[demo]'``), checked before any work.

The container image and a plain ``pip install keda-otel-scaler`` serve without them; a
command that needs one says so at once, with the line that installs it, instead of failing
on an import after a minute-long run.
"""

from __future__ import annotations

import importlib

DEMO_INSTALL = "pip install 'keda-otel-scaler[demo]'"

REPORT_PLOT = {"matplotlib": "matplotlib"}
"""Import name -> distribution, for ``demo --report`` (the replicas plot)."""


def missing(modules: dict[str, str]) -> list[str]:
    """The distributions of ``modules`` (import name -> distribution) that cannot be imported."""
    absent = []
    for module, distribution in modules.items():
        try:
            importlib.import_module(module)
        except ImportError:
            absent.append(distribution)
    return absent


def demo_problem(report: bool) -> str:
    """Why ``keda-otel-scaler demo`` cannot run as asked ('' when it can)."""
    absent = missing(REPORT_PLOT) if report else []
    if not absent:
        return ""
    return (
        f"--report needs {', '.join(absent)} (the demo extra), which is not installed. Install it with:\n"
        f"  {DEMO_INSTALL}\n"
        "or run the demo without --report."
    )
