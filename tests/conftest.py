"""Shared fixtures: a real service on free ports, run on its own event loop in a thread
(``service``, ``service_factory``), or as a child process (``scaler_process``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest

from scaler.app import BoundPorts, Service
from scaler.config import Settings
from scaler.model import Clock
from scaler.runner import ScalerProcess
from scaler.trigger import Offload, in_thread

T = TypeVar("T")

BASE_SETTINGS = Settings.of(
    listen_address="127.0.0.1",
    otlp_receiver_port=0,
    keda_external_scaler_port=0,
    rest_api_port=0,
    internal_metrics_port=0,
    shutdown_grace_seconds=2.0,
    warmup_seconds=0.0,
)


class ManualClock:
    """A service clock the test moves (``advance``); samples are stamped with it (``ns``)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def ns(self) -> int:
        return int(self.now * 1e9)


class RunningService:
    """A Service started on a private event loop thread; tests talk to it over sockets."""

    def __init__(self, settings: Settings, clock: Clock = time.time, offload: Offload = in_thread) -> None:
        self.settings = settings
        self.clock = clock
        self.offload = offload
        self.loop = asyncio.new_event_loop()
        self.service: Service | None = None
        self._started: Future[BoundPorts] = Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="service", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.service = Service(self.settings, self.clock, offload=self.offload)
            ports = await self.service.start()
        except BaseException as exc:
            self._started.set_exception(exc)
            return
        self._started.set_result(ports)
        await self._stop.wait()
        await self.service.stop(grace=1.0)

    def start(self) -> BoundPorts:
        self._thread.start()
        return self._started.result(timeout=30)

    @property
    def ports(self) -> BoundPorts:
        return self._started.result(timeout=30)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    def call(self, fn: Callable[[], T], timeout: float = 10) -> T:
        """Run ``fn`` on the service's loop (the store is single-threaded by design); ``timeout``
        only guards against a hang."""

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)
        self.loop.close()


@pytest.fixture
def service_factory() -> Iterator[Callable[..., RunningService]]:
    started: list[RunningService] = []

    def make(clock: Clock = time.time, offload: Offload = in_thread, **overrides: Any) -> RunningService:
        svc = RunningService(BASE_SETTINGS.replace(**overrides), clock, offload)
        svc.start()
        started.append(svc)
        return svc

    yield make
    for svc in started:
        svc.stop()


@pytest.fixture
def service(service_factory: Callable[..., RunningService]) -> RunningService:
    return service_factory()


@pytest.fixture
def scaler_process() -> Iterator[Callable[..., ScalerProcess]]:
    """Start ``keda-otel-scaler serve`` as a child (``scaler_process(args, env=..., log_path=...)``);
    every child still running at the end of the test is stopped."""
    started: list[ScalerProcess] = []

    def make(*args: Any, **kwargs: Any) -> ScalerProcess:
        process = ScalerProcess(*args, **kwargs)
        started.append(process)
        process.start()
        return process

    yield make
    for process in started:
        process.stop()
