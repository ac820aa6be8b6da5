"""Fixtures of the KEDA-facing integration tests: KEDA's client and an OTLP pusher on the ``service``."""

from __future__ import annotations

import pytest

from tests.conftest import RunningService
from tests.integration.test_keda import Keda, Pusher


@pytest.fixture
def keda(service: RunningService) -> Keda:
    return Keda(service)


@pytest.fixture
def pusher(service: RunningService) -> Pusher:
    return Pusher(service)
