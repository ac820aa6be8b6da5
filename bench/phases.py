"""The benchmark phases, each turning measurements into report rows.

* :func:`ingest_phase` — a server with 1k/10k series: OTLP gRPC (batched and per pod) and OTLP/HTTP
  against the decode limit; then a py-spy profile of more ingest.
* :func:`store_phase` — a server filled with 100k series × 24 samples (5 s apart, 120 s): ingest of the
  fill, RSS per series, GetMetrics latency, the Prometheus comparison, a query profile, reaction.
* :func:`engine_phase` — the query engine in-process on the same 100k-series fleet.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from bench import heavy, ingest, latency, prom, reaction, streams, vllmload, warmstart, workload
from bench.ingest import SECOND_NS
from bench.loadgen import IngestResult, LoadClient
from bench.profiling import Recorder, hotspots, inclusive, markdown, py_spy
from bench.report import Report, Row
from bench.server import ServerProcess

BATCH = 25
"""Pods per request when batched like a collector's batch processor (1000 series)."""
INGEST_TARGET = 0.5
QUERY_TARGET_MS = 1.0
MEMORY_TARGET_MIB = 300.0
REACTION_TARGET_MS = 50.0
INGEST_SHARES = [
    "Ingestor.ingest (",
    "NativeIngest.run (",
    "Store.append (",
    "_resolve (",
    "gc_collect_main",
    "Handle._run (",
]
UNDER_LOAD_TARGET_MS = 5.0
LOOP_HOLD_TARGET_MS = 20.0
STREAMS_OPEN_TARGET_S = 5.0
FLIP_STREAMS = 10
"""Streams that watch the flipping trigger (the rest watch deployments of their own)."""
REACTION_SHARES = ["Store.collect (", "gc_collect_main", "Ingestor.ingest (", "StreamIsActive (", "GetMetrics ("]
QUERY_SHARES = ["GetMetrics (", "Engine.instant (", "Store.select (", "gc_collect_main", "MetricWrapperBase.labels ("]


@dataclass(frozen=True)
class Sizes:
    small_series: int
    ingest_series: int
    big_series: int
    ingest_rounds: int
    latency_calls: int
    prom_calls: int
    flips: int
    vllm_pods: int
    vllm_rounds: int
    streams: int = 10_000
    stream_processes: int = 4
    background_series: int = 10_000
    clients: tuple[int, int] = (2, 2)
    """Load generator processes × client threads each (requests in flight)."""
    planner_pods: tuple[int, ...] = (8, 32)
    planner_calls: int = 30

    @property
    def workers(self) -> int:
        return self.clients[0] * self.clients[1]

    @staticmethod
    def of(quick: bool) -> Sizes:
        if quick:
            small = Sizes(1_000, 2_000, 10_000, 8, 300, 60, 30, 100, 8, streams=2_000, stream_processes=2)
            return replace(small, planner_pods=(4,), planner_calls=5)
        return Sizes(1_000, 10_000, 100_000, 30, 2000, 300, 200, 200, 30)


def _k(rate: float) -> str:
    return f"{rate / 1000:.0f}k samples/s"


def _ingest_row(report: Report, label: str, result: IngestResult, limit: float) -> None:
    ratio = result.rate / limit
    report.add(
        Row(label, _k(result.rate), f"decode limit {_k(limit)}", ratio, f"≥ {INGEST_TARGET}×", ratio >= INGEST_TARGET)
    )
    report.note(f"{label}: {result}")


def ingest_phase(report: Report, sizes: Sizes, profile: bool) -> None:
    with ServerProcess() as server:
        t0 = time.time_ns() - 100 * SECOND_NS  # 1 s apart: up to 130 rounds stay within retention + skew
        cursor = {"round": 0}

        def send(load: LoadClient, n: int, per_request: int) -> IngestResult:
            result = load.send(t0 + cursor["round"] * SECOND_NS, n, per_request, cursor["round"])
            cursor["round"] += n
            return result

        processes, threads = sizes.clients
        for series, per_request, transport in (
            (sizes.small_series, BATCH, "grpc"),
            (sizes.ingest_series, BATCH, "grpc"),
            (sizes.ingest_series, 1, "grpc"),
            (sizes.ingest_series, BATCH, "http"),
        ):
            prefix = "s" if series == sizes.small_series else "m"
            with LoadClient(
                server, transport, series=series, prefix=prefix, processes=processes, threads=threads
            ) as load:
                send(load, 1, per_request)  # creates the series; not timed
                pods = workload.payloads(series, prefix=prefix)
                timed = ingest.render_rounds(pods, t0 + cursor["round"] * SECOND_NS, 1.0, 3, per_request)
                limit = ingest.decode_limit([r for batch in timed for r in batch])
                del timed
                result = send(load, sizes.ingest_rounds, per_request)
            shape = f"{per_request} pod{'s' if per_request > 1 else ''}/request"
            name = "gRPC" if transport == "grpc" else "HTTP"
            _ingest_row(
                report,
                f"1 ingest OTLP {name}, {series // 1000}k series, {shape}, {sizes.workers} clients",
                result,
                limit,
            )
        if profile and py_spy():
            with LoadClient(server, series=sizes.ingest_series, processes=processes, threads=threads) as load:
                recorder = Recorder(server.pid, "ingest")
                time.sleep(0.5)
                deadline = time.monotonic() + 6.0
                while time.monotonic() < deadline and cursor["round"] < 380:
                    send(load, 4, BATCH)
                path = recorder.stop()
            shares = inclusive(path, INGEST_SHARES)
            report.hotspots += markdown("Ingest (server, OTLP gRPC, 25 pods/request)", hotspots(path), shares)


def store_phase(report: Report, sizes: Sizes, figures: set[str]) -> None:
    pods = workload.payloads(sizes.big_series)
    prom_skip = prom.available() if "prometheus" in figures else "not selected"
    if prom_skip and "prometheus" in figures:
        report.skipped.append(f"5 Prometheus comparison: {prom_skip}")
    prometheus = prom.PrometheusProcess().start() if not prom_skip else None
    try:
        with ServerProcess(warmstart.SERVER_ARGS) as server:
            time.sleep(1.0)
            rss_empty = server.rss_mib()
            # 24 samples 5 s apart ending 60 s from now: the windows stay full while we measure.
            t_end_ns = time.time_ns() + 60 * SECOND_NS
            first_ns = t_end_ns - 23 * 5 * SECOND_NS
            timestamps_ms = [(first_ns + r * 5 * SECOND_NS) // 1_000_000 for r in range(24)]
            if prometheus is not None:
                series = prom.fleet_series(pods, timestamps_ms)
                seconds = prometheus.push(series)
                report.note(f"Prometheus remote write: {len(series)} series × 24 samples in {seconds:.1f} s")
                del series
            processes, threads = sizes.clients
            with LoadClient(server, series=sizes.big_series, processes=processes, threads=threads) as load:
                creation = load.send(first_ns, 1, BATCH, spacing_s=5.0)
                steady = load.send(first_ns + 5 * SECOND_NS, 23, BATCH, first_round=1, spacing_s=5.0)
            limit = ingest.decode_limit(
                [r for batch in ingest.render_rounds(pods, first_ns + 5 * SECOND_NS, 5.0, 2, BATCH, 1) for r in batch]
            )
            report.note(f"fill, round 0 (creates {sizes.big_series} series): {creation}")
            if "ingest" in figures:
                label = f"1 ingest OTLP gRPC into a {sizes.big_series // 1000}k-series store, {BATCH} pods/request"
                _ingest_row(report, label, steady, limit)
            time.sleep(2.0)
            rss_full = server.rss_mib()
            if "memory" in figures:
                _memory_rows(report, sizes.big_series, rss_empty, rss_full)
            if "query" in figures:
                _query_rows(report, server, sizes)
                _broad_grpc_rows(report, server, sizes)
                _heavy_rows(report, server, sizes)
            if prometheus is not None:
                _prometheus_rows(report, server, prometheus, sizes, rss_full)
            if "profile" in figures and py_spy():
                _query_profile(report, server, sizes)
            if "reaction" in figures:
                _reaction_rows(report, server, sizes, profile="profile" in figures and py_spy() is not None)
            if "warmstart" in figures:
                warmstart.rows(report, server, sizes.big_series)
    finally:
        if prometheus is not None:
            prometheus.stop()


def _memory_rows(report: Report, series: int, rss_empty: float, rss_full: float) -> None:
    raw_mib = series * 24 * 16 / 2**20
    per_series = (rss_full - rss_empty) * 2**20 / series
    holds = rss_full <= MEMORY_TARGET_MIB if series >= 100_000 else None
    report.add(
        Row(
            f"3 memory: server RSS, {series // 1000}k series × 24 samples",
            f"{rss_full:.0f} MiB",
            f"empty process {rss_empty:.0f} MiB",
            rss_full / rss_empty,
            f"≤ {MEMORY_TARGET_MIB:.0f} MiB at 100k",
            holds,
        )
    )
    report.add(
        Row(
            "3 memory: RSS growth per active series",
            f"{per_series:.0f} B",
            "raw samples 384 B (24 × 16 B)",
            per_series / 384,
            "—",
            None,
        )
    )
    report.note(f"RSS empty {rss_empty:.1f} MiB, full {rss_full:.1f} MiB, raw sample bytes {raw_mib:.1f} MiB")


def _query_rows(report: Report, server: ServerProcess, sizes: Sizes) -> None:
    result = latency.measure_grpc(server, sizes.latency_calls)
    base = result.health
    for name, lat in result.queries.items():
        p50_s, p99_s = result.server_side[name]
        report.add(
            Row(
                f"2 GetMetrics {name}, end to end over gRPC (p99)",
                f"{lat.p99:.3f} ms (p50 {lat.p50:.3f})",
                f"health Check {base.p99:.3f} ms (p50 {base.p50:.3f})",
                lat.p99 / base.p99,
                "— (target is server side)",
                None,
            )
        )
        report.add(
            Row(
                f"2 GetMetrics {name}, server side (histogram p99)",
                f"{p99_s:.3f} ms (p50 {p50_s:.3f})",
                f"health Check {base.p99:.3f} ms",
                p99_s / base.p99,
                f"p99 ≤ {QUERY_TARGET_MS} ms",
                p99_s <= QUERY_TARGET_MS,
            )
        )
        report.note(f"GetMetrics {name}: value {result.values[name]:g}; {lat}; health {base}")


def _prometheus_rows(
    report: Report, server: ServerProcess, prometheus: prom.PrometheusProcess, sizes: Sizes, rss_ours: float
) -> None:
    t_s = time.time()
    for name, expr in latency.promql_forms().items():
        ours, ours_value = prom.query_latency(server.url(""), expr, t_s, sizes.prom_calls)
        theirs, their_value = prom.query_latency(prometheus.url(""), expr, t_s, sizes.prom_calls)
        report.add(
            Row(
                f"5 /api/v1/query {name} vs Prometheus 2.42 (p50)",
                f"{ours.p50:.3f} ms (p99 {ours.p99:.3f})",
                f"Prometheus {theirs.p50:.3f} ms (p99 {theirs.p99:.3f})",
                ours.p50 / theirs.p50,
                "< 1× (ours lower)",
                ours.p50 < theirs.p50,
            )
        )
        agree = _agree(ours_value, their_value)
        report.note(
            f"`{expr}` at t={t_s:.3f}: ours {ours_value:g}, Prometheus {their_value:g} "
            f"({'agree' if agree else 'DISAGREE'})"
        )
    _broad_rows(report, server, prometheus, sizes, t_s)
    theirs_rss = prometheus.rss_mib()
    report.add(
        Row(
            f"5 server RSS at {sizes.big_series // 1000}k series vs Prometheus 2.42",
            f"{rss_ours:.0f} MiB",
            f"Prometheus {theirs_rss:.0f} MiB",
            rss_ours / theirs_rss,
            "< 1× (ours lower)",
            rss_ours < theirs_rss,
        )
    )


def _broad_grpc_rows(report: Report, server: ServerProcess, sizes: Sizes) -> None:
    for name, (lat, value, base) in heavy.broad_grpc(server, sizes.latency_calls).items():
        target_ms = heavy.BROAD_TARGETS_MS.get(name, heavy.HISTOGRAM_TARGET_MS)
        report.add(
            Row(
                f"2 GetMetrics {name}, end to end over gRPC (p99)",
                f"{lat.p99:.2f} ms (p50 {lat.p50:.2f})",
                f"health Check {base.p99:.2f} ms (p50 {base.p50:.2f})",
                lat.p99 / base.p99,
                f"p99 ≤ {target_ms:.0f} ms",
                lat.p99 <= target_ms,
            )
        )
        report.note(f"GetMetrics `{heavy.BROAD_QUERIES[name]}`: value {value:g}; {lat}; health {base}")


def _agree(ours: float, theirs: float) -> bool:
    """The same answer (NaN agrees with NaN: no observation in the window on either side)."""
    if math.isnan(ours) or math.isnan(theirs):
        return math.isnan(ours) and math.isnan(theirs)
    return abs(ours - theirs) <= 1e-9 * max(1.0, abs(theirs))


def _heavy_rows(report: Report, server: ServerProcess, sizes: Sizes) -> None:
    result = heavy.beside_heavy_query(server, sizes.latency_calls)
    report.add(
        Row(
            "2 GetMetrics client p99 beside a heavy /api/v1/query (55k-series regex)",
            f"{result.loaded.p99:.2f} ms (p50 {result.loaded.p50:.2f})",
            f"no heavy query {result.idle.p99:.2f} ms (p50 {result.idle.p50:.2f})",
            result.loaded.p99 / result.idle.p99,
            f"no slice holds the loop > {LOOP_HOLD_TARGET_MS:.0f} ms: p99 ≤ idle p99 + {LOOP_HOLD_TARGET_MS:.0f} ms",
            result.loaded.p99 <= result.idle.p99 + LOOP_HOLD_TARGET_MS,
        )
    )
    report.note(
        f"beside heavy query `{heavy.HEAVY_QUERY}`: GetMetrics idle {result.idle}, loaded {result.loaded}; "
        f"heavy query {result.heavy}"
    )


def _broad_rows(
    report: Report, server: ServerProcess, prometheus: prom.PrometheusProcess, sizes: Sizes, t_s: float
) -> None:
    for name, expr in heavy.BROAD_QUERIES.items():
        ours, ours_value = prom.query_latency(server.url(""), expr, t_s, sizes.prom_calls)
        theirs, their_value = prom.query_latency(prometheus.url(""), expr, t_s, sizes.prom_calls)
        ratio = ours.p99 / theirs.p99
        if name in heavy.BROAD_TARGETS_MS:
            target_ms = heavy.BROAD_TARGETS_MS[name]
            target, holds = f"p99 ≤ {target_ms:.0f} ms", ours.p99 <= target_ms
        else:
            target = f"p99 ≤ {heavy.HISTOGRAM_TARGET_MS:.0f} ms and ≤ 1/20×"
            holds = ours.p99 <= heavy.HISTOGRAM_TARGET_MS and ratio <= heavy.HISTOGRAM_TARGET_RATIO
        report.add(
            Row(
                f"5 /api/v1/query {name} vs Prometheus 2.42 (p99)",
                f"{ours.p99:.2f} ms (p50 {ours.p50:.2f})",
                f"Prometheus {theirs.p99:.2f} ms (p50 {theirs.p50:.2f})",
                ratio,
                target,
                holds,
            )
        )
        agree = _agree(ours_value, their_value)
        report.note(
            f"`{expr}`: ours {ours_value:g}, Prometheus {their_value:g} "
            f"({'agree' if agree else 'DISAGREE'}); ours {ours}, Prometheus {theirs}"
        )


def _query_profile(report: Report, server: ServerProcess, sizes: Sizes) -> None:
    recorder = Recorder(server.pid, "query")
    time.sleep(0.5)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        latency.measure_grpc(server, 200)
    path = recorder.stop()
    shares = inclusive(path, QUERY_SHARES)
    title = f"GetMetrics (server, compat + PromQL, {sizes.big_series // 1000}k-series store)"
    report.hotspots += markdown(title, hotspots(path), shares)


def _reaction_rows(report: Report, server: ServerProcess, sizes: Sizes, profile: bool) -> None:
    recorder = Recorder(server.pid, "reaction") if profile else None
    result = reaction.measure(server, sizes.flips, sizes.background_series)
    if recorder is not None:
        path = recorder.stop()
        store = f"{sizes.big_series // 1000}k store"
        title = f"Reaction phase (server: flips + 10k series / 5 s background + housekeeping, {store})"
        report.hotspots += markdown(title, hotspots(path), inclusive(path, REACTION_SHARES))
    base = result.baseline
    for label, lat in (("StreamIsActive message", result.stream), ("changed GetMetrics value", result.get_metrics)):
        report.add(
            Row(
                f"4 reaction: Export → {label} (p99)",
                f"{lat.p99:.2f} ms (p50 {lat.p50:.2f})",
                f"gRPC round trip {base.p99:.2f} ms (p50 {base.p50:.2f})",
                lat.p99 / base.p99,
                f"p99 ≤ {REACTION_TARGET_MS:.0f} ms",
                lat.p99 <= REACTION_TARGET_MS,
            )
        )
    bg = result.background
    samples, seconds = bg.get("samples", 0.0), max(bg.get("seconds", 0.0), 1e-9)
    report.note(
        f"reaction: {result.stream.n} flips, {result.missed} missed; Export round trip {result.export_rtt}; "
        f"background {samples:.0f} samples in {seconds:.0f} s ({samples / seconds / 1000:.1f}k/s), "
        f"{bg.get('rejected', 0):.0f} rejected, max lateness {bg.get('max_late_s', 0) * 1000:.0f} ms"
    )


def engine_phase(report: Report, sizes: Sizes) -> None:
    pods = workload.payloads(sizes.big_series)
    result = latency.measure_engine(pods, sizes.latency_calls)
    for name, lat in result.queries.items():
        quiet = result.without_gc[name]
        report.add(
            Row(
                f"2 GetMetrics {name}, engine in-process (p99)",
                f"{lat.p99:.3f} ms (p50 {lat.p50:.3f})",
                f"same calls, GC paused: p99 {quiet.p99:.3f} ms",
                lat.p99 / quiet.p99,
                f"p99 ≤ {QUERY_TARGET_MS} ms",
                lat.p99 <= QUERY_TARGET_MS,
            )
        )
    report.note(
        f"engine in-process: {result.series} series (filled in {result.fill_seconds:.1f} s), selected {result.selected}"
    )


def vllm_phase(report: Report, sizes: Sizes, profile: bool) -> None:
    """Issue 20: the vLLM-shaped payload on the native and the reference path, side by side."""
    shape = f"{vllmload.PER_REQUEST} pods/request, {vllmload.SHAPE.name}"
    for path in vllmload.PATHS:
        r = vllmload.measure(path, sizes.vllm_pods, sizes.vllm_rounds, sizes.latency_calls, sizes.clients, profile)
        target = f"≥ {INGEST_TARGET}×" if path == "native" else "— (before: reference path)"
        holds = (lambda ratio: ratio >= INGEST_TARGET) if path == "native" else (lambda ratio: None)
        for unit, ours, limit in (
            ("data points/s", r.points_rate, r.limit_points),
            ("samples/s", r.ingest.rate, r.limit_samples),
        ):
            report.add(
                Row(
                    f"1 ingest vLLM-shaped OTLP gRPC, {path} path, {unit}",
                    f"{ours / 1000:.0f}k {unit}",
                    f"decode + walk {limit / 1000:.0f}k {unit}",
                    ours / limit,
                    target,
                    holds(ours / limit),
                )
            )
        loaded, idle = r.loaded, r.idle
        report.add(
            Row(
                f"2 GetMetrics client p99 while ingest runs at half capacity, {path} path",
                f"{loaded.p99:.2f} ms (p50 {loaded.p50:.2f})",
                f"idle {idle.p99:.2f} ms (p50 {idle.p50:.2f})",
                loaded.p99 / idle.p99,
                f"p99 ≤ {UNDER_LOAD_TARGET_MS:.0f} ms" if path == "native" else "— (before)",
                loaded.p99 <= UNDER_LOAD_TARGET_MS if path == "native" else None,
            )
        )
        report.add(
            Row(
                f"2 GetMetrics client p99 while the same ingest goes to another server process, {path} path",
                f"{r.elsewhere.p99:.2f} ms (p50 {r.elsewhere.p50:.2f})",
                f"idle {idle.p99:.2f} ms (p50 {idle.p50:.2f})",
                r.elsewhere.p99 / idle.p99,
                "— (the machine's share of the row above)",
                None,
            )
        )
        load = r.load
        report.note(f"vLLM-shaped ingest ({shape}), {path} path: {r.ingest}")
        report.note(
            f"half-capacity load, {path} path: {load.get('points', 0) / max(load.get('seconds', 1), 1e-9) / 1000:.0f}k "
            f"points/s asked {0.5 * r.points_rate / 1000:.0f}k, {load.get('requests', 0):.0f} requests, "
            f"{load.get('rejected', 0):.0f} rejected, max lateness {load.get('max_late_s', 0) * 1000:.0f} ms; "
            f"GetMetrics idle {idle}, loaded {loaded}, load sent to another server process {r.elsewhere}; "
            f"CPU during the loaded calls (share of one core): server {r.cpu.get('server', 0):.0%}, "
            f"load generator {r.cpu.get('load', 0):.0%}, timing client {r.cpu.get('client', 0):.0%}"
        )
        for line in vllmload.breakdown(r):
            report.note(line)
        if r.profile:
            title = f"Ingest, vLLM-shaped payload, {path} path (server, OTLP gRPC, {shape})"
            report.hotspots += markdown(title, r.profile, r.shares)
        if r.loaded_profile:
            title = f"GetMetrics every {vllmload.PROBE_INTERVAL_S * 1000:g} ms under half-capacity ingest, {path} path"
            report.hotspots += markdown(title, r.loaded_profile)


def streams_phase(report: Report, sizes: Sizes) -> None:
    """Issue 20: ``sizes.streams`` StreamIsActive streams opened at once, and flip pushes."""
    with ServerProcess(extra_args=["--warmup-seconds", "0"]) as server:
        r = streams.measure(
            server, sizes.streams, sizes.stream_processes, FLIP_STREAMS, sizes.flips, sizes.background_series
        )
    n = f"{r.streams:,}"
    all_served = r.served == r.streams and not r.errors
    report.add(
        Row(
            f"6 StreamIsActive: {n} streams opened at once, until each has its first message",
            f"{r.open_seconds:.2f} s, {r.served:,} served",
            f"{n} IsActive calls at once {r.unary_seconds:.2f} s",
            r.open_seconds / r.unary_seconds,
            f"≤ {STREAMS_OPEN_TARGET_S:.0f} s, all served",
            r.open_seconds <= STREAMS_OPEN_TARGET_S and all_served,
        )
    )
    report.add(
        Row(
            f"6 StreamIsActive: flip → message (p99), {n} streams open",
            f"{r.flips_open.p99:.2f} ms (p50 {r.flips_open.p50:.2f})",
            f"{FLIP_STREAMS} streams open: {r.flips_alone.p99:.2f} ms (p50 {r.flips_alone.p50:.2f})",
            r.flips_open.p99 / r.flips_alone.p99,
            f"p99 ≤ {REACTION_TARGET_MS:.0f} ms, none missed",
            r.flips_open.p99 <= REACTION_TARGET_MS and r.missed == 0,
        )
    )
    bg = r.background
    report.note(
        f"streams: {r.served:,} of {n} served, errors {r.errors or 'none'}; flips {r.flips_open.n} and "
        f"{r.flips_alone.n} (Export → message at each of {FLIP_STREAMS} streams), {r.missed} missed; "
        f"server CPU with every stream open and no data {100 * r.idle_cpu:.1f} % of a core (rechecks); "
        f"CPU while they opened: server {r.open_cpu[0]:.2f} s ({1000 * r.open_cpu[0] / r.streams:.2f} ms a stream), "
        f"clients {r.open_cpu[1]:.2f} s; during the IsActive calls: server {r.unary_cpu[0]:.2f} s, "
        f"clients {r.unary_cpu[1]:.2f} s; "
        f"background {bg.get('samples', 0):.0f} samples in {bg.get('seconds', 0):.0f} s"
    )
