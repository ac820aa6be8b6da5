"""Figure 6 (issue 17): how soon a replica that starts empty is Ready from a peer's snapshot
when the peer holds the big store, against the baseline of restoring the very same snapshot
from a local file (same bytes, no network, no peer): both are process start to ``/readyz``."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx

from bench.report import Report, Row
from bench.server import ServerProcess

TOKEN = "bench-peer-token"
SERVER_ARGS = ["--peer-token", TOKEN]
"""The big store's server serves its snapshot to this token."""
READY_TARGET_S = 10.0


def _ready_seconds(args: list[str]) -> tuple[float, dict[str, object]]:
    started = time.monotonic()
    with ServerProcess(args) as server:
        seconds = time.monotonic() - started
        info: dict[str, object] = httpx.get(server.url("/info"), timeout=30).json()
    return seconds, info


def rows(report: Report, peer: ServerProcess, series: int) -> None:
    data = httpx.get(peer.url("/snapshot"), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120).content
    mib = len(data) / 2**20
    with tempfile.TemporaryDirectory(prefix="bench-warmstart-") as directory:
        path = Path(directory) / "store.snap"
        path.write_bytes(data)
        del data
        file_s, file_info = _ready_seconds(["--snapshot-path", str(path)])
    peer_s, peer_info = _ready_seconds(["--peers", peer.url(), "--peer-token", TOKEN])
    warm = peer_info["peers"]["warmStart"]  # type: ignore[index]
    restored = peer_info["snapshot"]["loaded"]  # type: ignore[index]
    if warm["outcome"] != "restored" or restored["series"] != file_info["snapshot"]["loaded"]["series"]:  # type: ignore[index]
        raise RuntimeError(f"the peer warm start did not restore the store: {warm}, {restored}")
    report.add(
        Row(
            f"6 HA: empty replica Ready from a peer's snapshot, {series // 1000}k series",
            f"{peer_s:.2f} s ({mib:.0f} MiB fetched in {warm['seconds']:.2f} s)",
            f"same snapshot from a local file {file_s:.2f} s",
            peer_s / file_s,
            f"≤ {READY_TARGET_S:.0f} s",
            peer_s <= READY_TARGET_S,
        )
    )
    report.note(
        f"warm start: {restored['series']} series, {restored['samples']} samples restored from {warm['peer']}; "
        f"transfer {warm['seconds']:.2f} s for {warm['bytes']} bytes"
    )
