"""``POST /memstore/reset`` and the admin token (case 13 of issue 9).

Without ``ADMIN_TOKEN`` the reset is disabled (403). With it (set through the environment, as in
a Kubernetes Secret), only ``Authorization: Bearer <token>`` resets; every other attempt is 401
and counted. The token never appears in ``/info`` (which still shows that one is set), in any
other response, or in the server log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.support import Hostile, strict_json

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-token-7d1f0c2a9b8e4f65a0c3"

WRONG_AUTHORIZATION = {
    "no-header": None,
    "empty": "",
    "bearer-only": "Bearer",
    "wrong-token": "Bearer not-the-token",
    "token-prefix": f"Bearer {TOKEN[:-1]}",
    "token-suffix": f"Bearer {TOKEN}x",
    "token-then-more": f"Bearer {TOKEN} {TOKEN}",
    "token-without-scheme": TOKEN,
    "basic-scheme": f"Basic {TOKEN}",
    "token-scheme": f"Token {TOKEN}",
    "double-bearer": f"Bearer Bearer {TOKEN}",
    "uppercase-token": f"Bearer {TOKEN.upper()}",
}


@pytest.fixture(scope="module")
def open_server() -> Iterator[Hostile]:
    """No ADMIN_TOKEN in the environment: reset is disabled."""
    with Hostile.running() as running:
        yield running


@pytest.fixture(scope="module")
def guarded() -> Iterator[Hostile]:
    """ADMIN_TOKEN from the environment, debug logging (the most talkative the log gets)."""
    with Hostile.running(["--log-level", "debug"], env={"ADMIN_TOKEN": TOKEN}) as running:
        yield running


def rejected(hostile: Hostile, reason: str) -> float:
    return hostile.counters().value("http_requests_rejected_total", path="/memstore/reset", reason=reason)


def test_reset_without_a_configured_token_is_403(open_server: Hostile) -> None:
    for authorization in (None, f"Bearer {TOKEN}", "Bearer"):
        before = rejected(open_server, "403")
        headers = {} if authorization is None else {"Authorization": authorization}
        reply = open_server.http.post("/memstore/reset", headers=headers)
        assert reply.status_code == 403, reply.text
        assert "ADMIN_TOKEN" in reply.text  # an explanation, naming the setting
        assert rejected(open_server, "403") - before == 1
    info = strict_json(open_server.http.get("/info").text)
    assert not info["config"]["admin_token"]


@pytest.mark.parametrize("case", list(WRONG_AUTHORIZATION))
def test_reset_with_a_wrong_authorization_is_401_and_counted(guarded: Hostile, case: str) -> None:
    authorization = WRONG_AUTHORIZATION[case]
    headers = {} if authorization is None else {"Authorization": authorization}
    before = rejected(guarded, "unauthorized")
    series = guarded.series_count()
    reply = guarded.http.post("/memstore/reset", headers=headers)
    assert reply.status_code == 401, (reply.status_code, reply.text)
    assert TOKEN not in reply.text
    assert rejected(guarded, "unauthorized") - before == 1
    assert guarded.series_count() == series


def test_info_shows_a_token_is_set_without_showing_it(guarded: Hostile) -> None:
    raw = guarded.http.get("/info")
    assert raw.status_code == 200
    assert TOKEN not in raw.text
    assert TOKEN[:12] not in raw.text  # not even a recognisable part of it
    shown = strict_json(raw.text)["config"]["admin_token"]
    assert shown and shown != TOKEN, shown
    for path in ("/metrics", "/openapi.json", "/memstore/data", "/api/v1/status/flags", "/api/v1/status/config"):
        reply = guarded.http.get(path)
        assert TOKEN not in reply.text, path


def test_reset_with_the_token_empties_the_store(guarded: Hostile) -> None:
    assert guarded.names()
    reply = guarded.http.post("/memstore/reset", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200, reply.text
    assert TOKEN not in reply.text
    assert guarded.names() == []
    assert guarded.series_count() == 0
    assert strict_json(guarded.http.get("/memstore/data").text) == {}
    assert (
        strict_json(guarded.http.get("/api/v1/query", params={"query": "count({__name__=~'.+'})"}).text)["data"][
            "result"
        ]
        == []
    )
    guarded.seed_sentinel()  # the invariants after this case hold for a fresh sentinel


def test_the_token_never_reaches_the_log(guarded: Hostile) -> None:
    """After right and wrong attempts (this test repeats them, so it holds in any order)."""
    for authorization in (*(a for a in WRONG_AUTHORIZATION.values() if a is not None), f"Bearer {TOKEN}"):
        guarded.http.post("/memstore/reset", headers={"Authorization": authorization})
    guarded.seed_sentinel()
    log = guarded.server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "ready:" in log  # the log is the server's
    assert TOKEN not in log
    assert TOKEN[:-1] not in log  # nor the near-misses clients sent
