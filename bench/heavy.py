"""Issue 19/20 query figures on the 100k-series store of :func:`bench.phases.store_phase`.

* **GetMetrics beside a heavy query**: KEDA ``GetMetrics`` (the PromQL trigger of
  :mod:`bench.latency`) timed idle, then again while another process runs
  ``quantile_over_time`` over a regex selecting every histogram bucket series of the fleet
  (55k of the 100k series) through ``/api/v1/query`` back to back. The ratio of the two p99s
  says whether evaluation holds the event loop. The heavy client is a separate process, so its
  JSON decoding does not share the measuring client's GIL.
* **Broad queries vs Prometheus 2.42**: ``sum by (deployment) (rate(...[1m]))`` over 1,000
  counter series and the TTFT p90 ``histogram_quantile`` over 1,000 prefill pods × 22 buckets,
  through ``/api/v1/query`` of both servers on the same data, p99 against p99.
* **Broad queries over KEDA's gRPC**: the ``sum by (deployment) (rate(...))`` as a KEDA trigger
  (``GetMetrics``), p99 against a ``grpc.health`` Check round trip in the same run (what any call
  costs here).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass

import grpc
import httpx

from bench import latency
from bench.server import GRPC_OPTIONS, ServerProcess
from bench.stats import Latency, time_calls
from scaler._gen import externalscaler_pb2_grpc as pb_grpc

HEAVY_QUERY = 'quantile_over_time(0.5, {__name__=~"vllm:.*_seconds_bucket"}[1m])'
PREFILL_1000 = 'deployment=~"m(0[0-9]|1[0-9])-llm-d-modelservice-prefill"'
"""20 prefill deployments × 50 pods: 1,000 pods."""
BROAD_QUERIES = {
    "sum by (deployment) (rate(…[1m])), 1,000 series": (
        f'sum by (deployment) (rate(vllm:request_success_total{{finished_reason="stop", {PREFILL_1000}}}[1m]))'
    ),
    "TTFT p90 histogram_quantile, 1,000 pods × 22 buckets": (
        f"histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{{{PREFILL_1000}}}[1m])))"
    ),
}
BROAD_TARGETS_MS = {"sum by (deployment) (rate(…[1m])), 1,000 series": 3.0}
HISTOGRAM_TARGET_MS = 10.0
HISTOGRAM_TARGET_RATIO = 1 / 20


GRPC_QUERIES = ("sum by (deployment) (rate(…[1m])), 1,000 series",)
"""The broad queries timed as KEDA triggers too (issue 20 gives that one's figure over KEDA's
gRPC). The TTFT quantile is NaN on the benchmark's fleet, whose bucket counts never change (no
observation in the window): a trigger answers that as not found."""


def broad_grpc(server: ServerProcess, n: int) -> dict[str, tuple[Latency, float, Latency]]:
    """:data:`GRPC_QUERIES` as KEDA triggers over gRPC: per query (latency, value, health
    Check latency in the same run)."""
    # sum by (deployment) answers 20 series: KEDA gets their max (the trigger's aggregate)
    keys = {f"broad{i}": name for i, name in enumerate(GRPC_QUERIES)}
    metadata = {
        key: {"query": BROAD_QUERIES[name], "targetValue": "1", "aggregate": "max"} for key, name in keys.items()
    }
    result = latency.measure_grpc(server, n, metadata)
    return {name: (result.queries[key], result.values[key], result.health) for key, name in keys.items()}


def _heavy_loop(base_url: str, seconds: float, out: mp.Queue[float]) -> None:  # pragma: no cover - child
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base_url, timeout=120) as client:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            reply = client.get("/api/v1/query", params={"query": HEAVY_QUERY})
            reply.raise_for_status()
            out.put(time.perf_counter() - start)


@dataclass(frozen=True)
class BesideHeavy:
    idle: Latency
    loaded: Latency
    heavy: Latency
    """Durations of the heavy queries that ran meanwhile."""


def beside_heavy_query(server: ServerProcess, n: int) -> BesideHeavy:
    """GetMetrics idle, then while a heavy query runs over and over in another process."""
    channel = grpc.insecure_channel(f"127.0.0.1:{server.keda}", options=GRPC_OPTIONS)
    try:
        stub = pb_grpc.ExternalScalerStub(channel)
        request = latency.metrics_request("promql", latency.triggers()["promql"])
        idle = Latency.of(time_calls(lambda: stub.GetMetrics(request), n))
        ctx = mp.get_context("spawn")
        queue: mp.Queue[float] = ctx.Queue()
        child = ctx.Process(target=_heavy_loop, args=(server.url(""), 600.0, queue), daemon=True)
        child.start()
        try:
            durations = [queue.get(timeout=120)]  # the first heavy query has run (and warmed up)
            loaded: list[float] = []
            while len(loaded) < n or len(durations) < 3:
                loaded += time_calls(lambda: stub.GetMetrics(request), 50, warmup=0)
                while not queue.empty():
                    durations.append(queue.get())
        finally:
            child.terminate()
            child.join(10)
        return BesideHeavy(idle, Latency.of(loaded), Latency.of(durations))
    finally:
        channel.close()
