"""Replicas of ``keda-otel-scaler serve`` on loopback, as a StatefulSet runs them: fixed
addresses (a restarted replica comes back where its peers and the collectors' exporters expect
it), every replica's ``PEERS`` naming them all (its own address refuses, not being warm), one
``PEER_TOKEN``. ``kill`` is ``kill -9``; ``restart`` starts the same replica again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from scaler.runner import Ports, ScalerProcess, free_ports

TOKEN = "ha-test-peer-token"


class Replica:
    def __init__(self, index: int, ports: Ports, args: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.index = index
        self.ports = ports
        self.process = ScalerProcess(args, env=env, log_path=log, ports=ports)
        self.started_at = 0.0
        self.ready_seconds = 0.0
        """Spawn to ``/readyz`` 200 of the last start."""

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def keda(self) -> str:
        return f"127.0.0.1:{self.ports.keda}"

    @property
    def otlp(self) -> str:
        return f"127.0.0.1:{self.ports.otlp}"

    def start(self, timeout: float = 60.0) -> None:
        self.started_at = time.monotonic()
        self.process.start(timeout=timeout, attempts=1)
        self.ready_seconds = time.monotonic() - self.started_at

    def kill(self) -> None:
        """``kill -9``: no SIGTERM handling, no snapshot written, sockets reset by the kernel."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.stop(grace=5)

    def info(self) -> dict[str, object]:
        reply: dict[str, object] = httpx.get(self.http + "/info", timeout=10).json()
        return reply

    def metrics(self) -> str:
        return httpx.get(self.http + "/metrics", timeout=10).text


class Cluster:
    """``n`` replicas; ``start`` returns once all are Ready (which, with PEERS, needs data or the warm-up)."""

    def __init__(self, n: int, directory: Path, args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        picked = free_ports(4 * n)
        self.ports = [Ports(*picked[4 * i : 4 * i + 4]) for i in range(n)]
        peers = ",".join(f"http://127.0.0.1:{p.http}" for p in self.ports)
        environment = {"PEERS": peers, "PEER_TOKEN": TOKEN, "LOG_LEVEL": "info", **(env or {})}
        self.replicas = [
            Replica(i, ports, args, environment, directory / f"replica-{i}.log") for i, ports in enumerate(self.ports)
        ]

    def start(self) -> None:
        for replica in self.replicas:
            replica.start()

    def stop(self) -> None:
        for replica in self.replicas:
            replica.process.stop(grace=10)

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]
