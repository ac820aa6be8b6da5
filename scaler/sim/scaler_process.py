"""The scaler the demo drives: ``keda-otel-scaler serve`` as a child process
(:class:`scaler.runner.ScalerProcess`), logging warnings only unless ``LOG_LEVEL`` says otherwise.

A separate process keeps the scaler and the simulator from competing for one GIL; the
simulator talks to it over the wire only.
"""

from __future__ import annotations

import os
from pathlib import Path

from scaler import runner
from scaler.runner import Ports, ScalerStartError

__all__ = ["Ports", "ScalerProcess", "ScalerStartError"]


class ScalerProcess(runner.ScalerProcess):
    """``with ScalerProcess(log) as scaler: scaler.ports.keda …`` — always terminated on exit."""

    def __init__(self, log_path: Path | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(env={"LOG_LEVEL": os.environ.get("LOG_LEVEL", "warning")}, host=host, log_path=log_path)
