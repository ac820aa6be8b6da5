"""Figure 5: the same samples in Prometheus 2.42 (Debian's ``/usr/bin/prometheus``), pushed with
remote write, then instant-query latency over ``/api/v1/query`` and server RSS, ours vs theirs.

The ``prompb.WriteRequest`` is hand-encoded (a few varint / length-delimited fields), so no
generated code is needed; snappy block compression comes from ``cramjam``.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from bench import workload
from bench.stats import Latency, rss_mib, time_calls

PROMETHEUS = "/usr/bin/prometheus"
Labels = tuple[tuple[str, str], ...]
SeriesSamples = tuple[Labels, Sequence[tuple[int, float]]]


def available() -> str | None:
    """None when the comparison can run, else why not."""
    if shutil.which(PROMETHEUS) is None:
        return f"{PROMETHEUS} not found (apt-get install prometheus; `make bench` installs it)"
    try:
        import cramjam  # noqa: F401
    except ImportError:
        return "cramjam is not installed (pip install cramjam) — needed for snappy remote write"
    return None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_labels(labels: Labels) -> bytes:
    return b"".join(_field(1, _field(1, k.encode()) + _field(2, v.encode())) for k, v in labels)


def encode_samples(samples: Iterable[tuple[int, float]]) -> bytes:
    return b"".join(_field(2, b"\x09" + struct.pack("<d", v) + b"\x10" + _varint(t)) for t, v in samples)


def write_request(series: Iterable[SeriesSamples]) -> bytes:
    """A serialized ``prompb.WriteRequest``."""
    return b"".join(_field(1, encode_labels(labels) + encode_samples(samples)) for labels, samples in series)


def fleet_series(pods: Sequence[workload.PodPayload], timestamps_ms: Sequence[int]) -> list[SeriesSamples]:
    """Every series of the fleet with the same samples the OTLP rounds carry (round r at
    ``timestamps_ms[r]``, histograms grown as :meth:`~bench.workload.PodPayload.grown` grows
    them), labels exactly as our translation builds them."""
    from scaler import otlp
    from scaler.config import Settings

    promotions = Settings().otlp.promotions
    out: list[SeriesSamples] = []
    for payload in pods:
        series: dict[Labels, list[tuple[int, float]]] = {}
        for r, t in enumerate(timestamps_ms):
            request = ExportMetricsServiceRequest()
            request.ParseFromString(payload.grown(t * 1_000_000, workload.counter_value(r)))
            for labels, _ts, value, _delta in otlp.translate(request, promotions, 0).samples:
                series.setdefault(labels, []).append((t, value))
        out.extend(series.items())
    return out


class PrometheusProcess:
    """A throwaway Prometheus with the remote-write receiver on a free loopback port."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-prometheus-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusProcess:
        config = self.dir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n", encoding="utf-8")
        log = (self.dir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-remote-write-receiver",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url("/-/ready"), timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Prometheus did not become ready; see {self.dir / 'prometheus.log'}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def push(self, series: Sequence[SeriesSamples], per_request: int = 2000) -> float:
        """Remote-write every series; returns the seconds it took."""
        import cramjam

        headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        start = time.perf_counter()
        with httpx.Client(timeout=120) as client:
            for i in range(0, len(series), per_request):
                body = bytes(cramjam.snappy.compress_raw(write_request(series[i : i + per_request])))
                reply = client.post(self.url("/api/v1/write"), content=body, headers=headers)
                if reply.status_code >= 300:
                    raise RuntimeError(f"remote write failed: {reply.status_code} {reply.text[:300]}")
        return time.perf_counter() - start

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def query_latency(base_url: str, expr: str, t_s: float, n: int) -> tuple[Latency, float]:
    """Latency of ``GET /api/v1/query`` on one keep-alive connection, and the scalar answer."""
    params = {"query": expr, "time": f"{t_s:.3f}"}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        reply = client.get("/api/v1/query", params=params)
        reply.raise_for_status()
        body = reply.json()
        result = body["data"]["result"]
        value = float(result[0]["value"][1]) if result else float("nan")
        return Latency.of(time_calls(lambda: client.get("/api/v1/query", params=params), n)), value
