"""The service under test, in its own process (:class:`scaler.runner.ScalerProcess`), so the
benchmark client never shares its GIL; plus a client for its OTLP, KEDA and HTTP ports."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from prometheus_client.parser import text_string_to_metric_families

from scaler.runner import ScalerProcess

EXPORT_PATH = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
HEALTH_PATH = "/grpc.health.v1.Health/Check"
GRPC_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


class ServerProcess(ScalerProcess):
    """``keda-otel-scaler serve`` on free loopback ports, logging at info level to a file that
    outlives the process (``log_path``)."""

    def __init__(
        self, extra_args: Sequence[str] = (), max_series: int = 1_000_000, prelude: str = "", cwd: Path | None = None
    ) -> None:
        # ``prelude``: Python run before the CLI, to try a variant without editing scaler/.
        # ``cwd``: ``python -m`` puts it first on sys.path, so a patched copy of scaler/ there
        # (bench.ab) is what runs.
        args = ["--max-series", str(max_series), "--log-level", "info", *extra_args]
        entry = ["-m", "scaler"] if not prelude else ["-c", f"{prelude}\nfrom scaler import cli\ncli.main()"]
        log = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
        super().__init__(args, log_path=log, cwd=cwd, entry=entry)

    def started(self, timeout: float = 60.0) -> ServerProcess:
        self.start(timeout)
        return self

    @property
    def otlp(self) -> int:
        return self.ports.otlp

    @property
    def keda(self) -> int:
        return self.ports.keda

    @property
    def http(self) -> int:
        return self.ports.http

    def metrics(self) -> dict[str, float]:
        """The self-metrics as ``{'name{label="v",...}': value}``."""
        text = httpx.get(self.url("/metrics"), timeout=30).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
        return out


def otlp_export(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[bytes, ExportMetricsServiceResponse]:
    """A generic unary Export that sends pre-serialized request bytes as they are."""
    return channel.unary_unary(
        EXPORT_PATH, request_serializer=None, response_deserializer=ExportMetricsServiceResponse.FromString
    )
