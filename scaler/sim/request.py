"""A simulated inference request and a pod's prefix cache.

A prompt is a chain of cacheable segments ``((key, tokens), ...)``; each key names the
prompt *up to and including* that segment (like vLLM's chained block hashes), so a cache
hit is the longest cached leading run of segments. The repeated prompt of the demo is
one segment; a unique prompt with a shared system prompt is two.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

Segments = tuple[tuple[str, int], ...]


@dataclass(eq=False, slots=True)
class Request:
    rid: int
    arrival: float
    """When the gateway received it (simulation seconds)."""
    segments: Segments
    isl: int
    osl: int
    phase: int = 0
    remote_prefill: bool = False
    """The EPP picked a prefill pod (P/D); otherwise decode prefills locally."""
    prefill_pod: str = ""
    decode_pod: str = ""
    # prefill-pod timeline
    prefill_arrival: float | None = None
    prefill_scheduled: float | None = None
    prefill_done: float | None = None
    # decode-pod timeline
    decode_arrival: float | None = None
    decode_scheduled: float | None = None
    first_token: float | None = None
    finished: float | None = None
    # engine bookkeeping
    todo: int = 0
    """Prompt tokens this engine still has to compute (chunked prefill)."""
    done: int = 0
    """Prompt tokens computed so far on this engine."""
    join_step: int = 0
    finish_step: int = 0
    ctx_base: int = 0
    generated: int = 0
    """Tokens generated before a preemption (a decode pod recomputes them to resume) or an abort
    (vLLM observes them in ``vllm:request_generation_tokens``)."""
    preempted_at: float | None = None
    aborted: bool = False
    """Aborted by a pod's termination, or dropped at the gateway."""
    failed: bool = False
    """Reported as failed (once)."""
    # what the EPP's in-flight load producer charged to each endpoint (released on the
    # first streamed token, the request count of the decode endpoint on completion)
    epp_prefill_tokens: int = 0
    epp_decode_tokens: int = 0
    epp_open: int = 0
    """Endpoints (0-2) whose request count still holds this request."""

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival


class PrefixCache:
    """LRU map of segment keys to token counts, bounded by a token capacity."""

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity = capacity_tokens
        self.tokens = 0
        self._entries: OrderedDict[str, int] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def match(self, segments: Segments) -> int:
        """Tokens of the longest cached leading run of ``segments`` (touches them)."""
        hit = 0
        for key, tokens in segments:
            if key not in self._entries:
                break
            self._entries.move_to_end(key)
            hit += tokens
        return hit

    def insert(self, segments: Segments) -> None:
        for key, tokens in segments:
            if key in self._entries:
                self._entries.move_to_end(key)
                continue
            self._entries[key] = tokens
            self.tokens += tokens
        while self.tokens > self.capacity and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.tokens -= evicted
