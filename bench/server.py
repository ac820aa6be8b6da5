"""The service under test, in its own process (``python -m scaler serve``), so the benchmark
client never shares its GIL; plus a client for its OTLP, KEDA and HTTP ports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from prometheus_client.parser import text_string_to_metric_families

from bench.stats import rss_mib

EXPORT_PATH = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
HEALTH_PATH = "/grpc.health.v1.Health/Check"
_READY = re.compile(r"ready: otlp-grpc=(\d+) keda-grpc=(\d+) http=(\d+)")
GRPC_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


class ServerProcess:
    """``keda-otel-scaler serve`` on free loopback ports; stderr goes to a log file."""

    def __init__(
        self, extra_args: Sequence[str] = (), max_series: int = 1_000_000, prelude: str = "", cwd: Path | None = None
    ) -> None:
        # ``prelude``: Python run before the CLI, to try a proposed change without editing scaler/
        entry = ["-m", "scaler"] if not prelude else ["-c", f"{prelude}\nfrom scaler import cli\ncli.main()"]
        self.args = [
            sys.executable,
            *entry,
            "serve",
            "--listen-address",
            "127.0.0.1",
            "--otlp-receiver-port",
            "0",
            "--keda-external-scaler-port",
            "0",
            "--rest-api-port",
            "0",
            "--max-series",
            str(max_series),
            "--log-level",
            "info",
            *extra_args,
        ]
        self.log_path = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
        # ``python -m``/``-c`` put the working directory first on sys.path: a patched copy of scaler/
        # (bench.ab) is picked up by running there.
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.otlp = self.keda = self.http = 0
        self._lines: list[str] = []
        self._ready = threading.Event()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            self.args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=self.cwd
        )
        threading.Thread(target=self._pump, name="server-log", daemon=True).start()
        if not self._ready.wait(timeout) or not self.otlp:
            self.stop()
            raise RuntimeError(f"server did not start; log: {self.log_path}\n" + "".join(self._lines[-20:]))
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with self.log_path.open("w", encoding="utf-8") as log:
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace")
                log.write(line)
                log.flush()
                if len(self._lines) < 200:
                    self._lines.append(line)
                match = _READY.search(line)
                if match:
                    self.otlp, self.keda, self.http = (int(g) for g in match.groups())
                    self._ready.set()
        self._ready.set()

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def metrics(self) -> dict[str, float]:
        """The self-metrics as ``{'name{label="v",...}': value}``."""
        text = httpx.get(self.url("/metrics"), timeout=30).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
        return out

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def otlp_export(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[bytes, ExportMetricsServiceResponse]:
    """A generic unary Export that sends pre-serialized request bytes as they are."""
    return channel.unary_unary(
        EXPORT_PATH, request_serializer=None, response_deserializer=ExportMetricsServiceResponse.FromString
    )
