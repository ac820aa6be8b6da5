"""The KEDA servicer in-process (no sockets): every Reading state → its reply or gRPC status,
through the real servicer over a real store, engine and trigger cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, NoReturn, TypeVar, cast

import grpc
import pytest

from scaler import query
from scaler._gen import externalscaler_pb2 as pb
from scaler.config import StoreLimits, TriggerDefaults
from scaler.keda import Context, ExternalScaler, Status, answer_of
from scaler.model import make_labels
from scaler.selfmetrics import SelfMetrics
from scaler.store import Store
from scaler.trigger import KEDA_VALUE_LIMIT, Reading, State, TriggerCache

T = TypeVar("T")
NOW_S = 1_800_000_000.0
REF = pb.ScaledObjectRef(name="pd-decode", namespace="llm-d")


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class FakeContext:
    """What the servicer uses of a grpc.aio context: ``abort`` raises."""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: object = ()) -> NoReturn:
        raise Aborted(code, details)


CONTEXT = cast(Context, FakeContext())


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (Reading(State.VALUE, raw=4.5), 4.5),
        (Reading(State.NOT_FOUND, fallback=3.0, message="no series matches 'x'"), 3.0),
        (
            Reading(State.NOT_FOUND, message="no series matches 'x' (errIfNotFound is set)"),
            Status(
                grpc.StatusCode.NOT_FOUND, "ScaledObject llm-d/pd-decode: no series matches 'x' (errIfNotFound is set)"
            ),
        ),
        (
            Reading(State.HOLD, message="no data yet"),
            Status(grpc.StatusCode.UNAVAILABLE, "ScaledObject llm-d/pd-decode: no data yet"),
        ),
        (
            Reading(State.INVALID, message="query returned 3 series"),
            Status(
                grpc.StatusCode.INVALID_ARGUMENT,
                "ScaledObject llm-d/pd-decode: metadata key 'query': query returned 3 series",
            ),
        ),
    ],
)
def test_each_reading_maps_to_a_number_or_a_status(reading: Reading, expected: float | Status) -> None:
    assert answer_of(REF, reading) == expected


def test_a_nameless_ref_is_still_named() -> None:
    answer = answer_of(pb.ScaledObjectRef(), Reading(State.HOLD, message="m"))
    assert isinstance(answer, Status) and answer.message == "ScaledObject: m"


class Servicer:
    """The real servicer over a store holding ``waiting{pod=a}`` = 5 and two ``wide`` series."""

    def __init__(self, warming: bool = False) -> None:
        self.store = Store(StoreLimits(), clock=lambda: NOW_S)
        t = int((NOW_S - 5) * 1000)
        self.store.append(
            [
                (make_labels("waiting", {"pod": "a"}), t, 5.0, False),
                (make_labels("wide", {"pod": "a"}), t, 1.0, False),
                (make_labels("wide", {"pod": "b"}), t, 2.0, False),
            ]
        )
        self.metrics = SelfMetrics(lambda: self.store.series_count)
        self.scaler = ExternalScaler(
            self.store,
            query.Engine(self.store),
            TriggerCache(TriggerDefaults(), 120.0),
            self.metrics,
            warming=lambda: warming,
        )

    def metrics_reply(self, **metadata: str) -> pb.MetricValue:
        ref = pb.ScaledObjectRef(name="pd-decode", namespace="llm-d", scalerMetadata=metadata)
        reply = run(self.scaler.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName="s0-x"), CONTEXT))
        (value,) = reply.metricValues
        return value

    def active(self, **metadata: str) -> bool:
        ref = pb.ScaledObjectRef(name="pd-decode", namespace="llm-d", scalerMetadata=metadata)
        return run(self.scaler.IsActive(ref, CONTEXT)).result

    def refusal(self, **metadata: str) -> Aborted:
        with pytest.raises(Aborted) as caught:
            self.metrics_reply(**metadata)
        return caught.value

    def errors(self, method: str, code: str) -> float:
        value = self.metrics.registry.get_sample_value("keda_errors_total", {"method": method, "code": code})
        return value or 0.0


def run(call: Awaitable[T]) -> T:
    async def main() -> T:
        return await call

    return asyncio.run(main())


def test_a_value_is_clamped_for_get_metrics_and_not_for_is_active() -> None:
    s = Servicer()
    value = s.metrics_reply(metricQuery="waiting", targetValue="1", clampMax="2")
    assert (value.metricName, value.metricValueFloat, value.metricValue) == ("s0-x", 2.0, 2)
    assert s.active(metricQuery="waiting", targetValue="1", clampMax="2", activationThreshold="4")
    assert not s.active(metricQuery="waiting", targetValue="1", activationThreshold="5")


def test_an_infinite_value_asks_for_the_most_keda_can_carry() -> None:
    value = Servicer().metrics_reply(query="waiting / 0", targetValue="1")  # +Inf
    assert value.metricValueFloat == KEDA_VALUE_LIMIT and value.metricValue == int(KEDA_VALUE_LIMIT)


def test_not_found_answers_the_fallback_or_not_found() -> None:
    s = Servicer()
    assert s.metrics_reply(metricQuery="absent", targetValue="1", valueIfNotFound="2.5").metricValueFloat == 2.5
    assert s.active(metricQuery="absent", targetValue="1", valueIfNotFound="1")
    refused = s.refusal(metricQuery="absent", targetValue="1", errIfNotFound="true")
    assert refused.code is grpc.StatusCode.NOT_FOUND and "absent" in refused.details
    assert s.errors("GetMetrics", "NOT_FOUND") == 1


def test_the_warm_up_holds_with_unavailable_but_data_is_answered() -> None:
    s = Servicer(warming=True)
    refused = s.refusal(metricQuery="absent", targetValue="1", valueIfNotFound="7")
    assert refused.code is grpc.StatusCode.UNAVAILABLE and "warming up" in refused.details
    assert s.metrics_reply(metricQuery="waiting", targetValue="1").metricValueFloat == 5.0


def test_invalid_readings_and_bad_metadata_are_invalid_argument() -> None:
    s = Servicer()
    wide = s.refusal(query="wide", targetValue="1")
    assert (
        wide.code is grpc.StatusCode.INVALID_ARGUMENT
        and "metadata key 'query': query returned 2 series" in wide.details
    )
    assert s.metrics_reply(query="wide", targetValue="1", aggregate="sum").metricValueFloat == 3.0
    bad = s.refusal(metricQuery="waiting", targetValue="0")
    assert bad.code is grpc.StatusCode.INVALID_ARGUMENT
    assert bad.details.startswith("ScaledObject llm-d/pd-decode: metadata key 'targetValue'")
    assert s.errors("GetMetrics", "INVALID_ARGUMENT") == 2


def test_a_trigger_aggregate_over_infinite_values_is_ieee_not_an_exception() -> None:
    # math.fsum raises on +Inf with -Inf (ValueError) and on partial sums past the float range
    # (OverflowError): GetMetrics failed with UNKNOWN. The sum is NaN (not found) and +Inf (bounded).
    s = Servicer()
    t = int((NOW_S - 5) * 1000)
    s.store.append(
        [
            (make_labels("infinite", {"pod": "a"}), t, float("inf"), False),
            (make_labels("infinite", {"pod": "b"}), t, float("-inf"), False),
            (make_labels("huge", {"pod": "a"}), t, 1e308, False),
            (make_labels("huge", {"pod": "b"}), t, 1e308, False),
        ]
    )
    for aggregate in ("sum", "avg"):
        nan = s.metrics_reply(query="infinite", targetValue="1", aggregate=aggregate, valueIfNotFound="7")
        assert nan.metricValueFloat == 7.0
        assert s.metrics_reply(query="huge", targetValue="1", aggregate=aggregate).metricValueFloat == KEDA_VALUE_LIMIT
    assert s.errors("GetMetrics", "UNKNOWN") == 0


def test_get_metric_spec_reads_only_the_metadata() -> None:
    s = Servicer()
    ref = pb.ScaledObjectRef(scalerMetadata={"metricQuery": "nothing_yet", "targetValue": "2.5", "metricName": "q"})
    (spec,) = run(s.scaler.GetMetricSpec(ref, CONTEXT)).metricSpecs
    assert (spec.metricName, spec.targetSizeFloat, spec.targetSize) == ("q", 2.5, 3)


def test_stream_is_active_sends_nothing_while_holding_then_the_state() -> None:
    holding = {"on": True}
    s = Servicer()
    s.scaler.warming = lambda: holding["on"]
    s.scaler.recheck_seconds = 0.01
    ref = pb.ScaledObjectRef(scalerMetadata={"metricQuery": "later", "targetValue": "1"})

    async def first_message() -> Any:
        stream = s.scaler.StreamIsActive(ref, CONTEXT)
        task = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        assert not task.done()  # a hold sends nothing
        holding["on"] = False  # the warm-up ends: "not found" → the fallback 0 → inactive
        message = await asyncio.wait_for(task, 5)
        await cast(AsyncGenerator[pb.IsActiveResponse, None], stream).aclose()  # as grpc does on cancel
        assert not s.store._listeners  # the stream unsubscribed from the store
        return message

    assert run(first_message()).result is False
