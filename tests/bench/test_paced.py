"""The paced load generator: patched requests carry exactly what rendering every pod gives, and
the scheduler counters the latency probe reads are real."""

from __future__ import annotations

import os
import threading
import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from bench import paced, workload
from bench.stats import CallTrace, Scheduler, TailShares


def test_patched_request_is_every_pod_rendered_at_each_time_and_counter() -> None:
    shape = workload.VLLM16
    pods = workload.payloads(3 * shape.series_per_pod, prefix="v", shape=shape)
    request = paced.Request(pods)
    for t_ns, counter in ((1_796_531_874_076_000_000, 1050.0), (17, workload.counter_value(9)), (2**64 - 1, -0.5)):
        body = request.render(t_ns, counter)
        assert body == request.render_each(t_ns, counter) == b"".join(p.render(t_ns, counter) for p in pods)
        decoded = ExportMetricsServiceRequest.FromString(body)
        metrics = [x for rm in decoded.resource_metrics for sm in rm.scope_metrics for x in sm.metrics]
        times = [p.time_unix_nano for x in metrics for p in (*x.gauge.data_points, *x.sum.data_points)]
        times += [p.time_unix_nano for x in metrics for p in x.histogram.data_points]
        assert len(times) == 3 * shape.points_per_pod
        assert set(times) == {t_ns}
        assert {p.as_double for x in metrics for p in x.sum.data_points} == {counter}


def test_scheduler_reads_the_run_time_of_the_main_thread_and_of_the_caller() -> None:
    # this process plays the server: its main thread is the one measured as the loop
    assert threading.get_native_id() == os.getpid(), "pytest runs tests on the main thread"
    scheduler = Scheduler(os.getpid())
    try:
        before = scheduler.read()
        deadline = time.thread_time() + 0.05
        while time.thread_time() < deadline:
            pass
        after = scheduler.read()
        assert after[0] - before[0] >= 40_000_000  # ~50 ms of CPU on the main thread, in ns
        assert all(a >= b for a, b in zip(after, before, strict=True))
        traces = scheduler.time_paced(lambda: time.sleep(0.002), 20, 0.003, warmup=0)
        assert len(traces) == 20
        assert all(t.seconds >= 0.002 and t.server_run >= 0 and t.client_wait >= 0 for t in traces)
    finally:
        scheduler.close()


def test_a_thread_that_ends_keeps_its_last_reading() -> None:
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    scheduler = Scheduler(os.getpid())
    try:
        before = scheduler.read()
        stop.set()
        helper.join()
        after = scheduler.read()  # the ended thread still counts (the last reading, whether or not the file answers)
        assert all(a >= b for a, b in zip(after, before, strict=True))
    finally:
        scheduler.close()


def test_tail_shares_average_the_slowest_calls() -> None:
    traces = [CallTrace(0.001 * i, 0.0005 * i, 0.0001 * i, 0.0, 0.0) for i in range(1, 101)]
    tail = TailShares.of(traces, 99.0)
    assert (tail.n, tail.seconds, tail.server_run) == (2, 0.0995, 0.04975)
    everything = TailShares.of(traces, 0.0)
    assert everything.n == 100 and abs(everything.seconds - 0.0505) < 1e-12
    assert str(tail).startswith("calls ≥ p99 (n=2): mean 99.50 ms; meanwhile the server loop ran 49.75 ms")
    assert str(everything).startswith("all calls: mean 50.50 ms;")
