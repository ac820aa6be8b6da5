"""Figure 1, ingest: the "decode limit" baseline (protobuf ``ParseFromString`` plus a minimal Python
walk of the same payloads, in-process, one thread) and the rounds it is measured on. The load itself
comes from :mod:`bench.loadgen` (clients in their own processes, pre-serialised requests), which
renders the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench import workload
from bench.stats import best_of

SECOND_NS = 1_000_000_000


def render_rounds(
    pods: Sequence[workload.PodPayload],
    first_ts_ns: int,
    spacing_s: float,
    n_rounds: int,
    pods_per_request: int,
    first_round: int = 0,
) -> list[list[bytes]]:
    """``n_rounds`` scrapes of every pod, ``spacing_s`` apart, starting at ``first_ts_ns``."""
    return [
        workload.render_round(pods, first_ts_ns + int(r * spacing_s * SECOND_NS), first_round + r, pods_per_request)
        for r in range(n_rounds)
    ]


def decode_limit(requests: Sequence[bytes], repeats: int = 3) -> float:
    """Samples/s of parse + walk over ``requests`` (best of ``repeats``)."""
    samples = sum(workload.decode_walk(r) for r in requests)
    seconds = best_of(lambda: [workload.decode_walk(r) for r in requests], repeats)
    return samples / seconds
