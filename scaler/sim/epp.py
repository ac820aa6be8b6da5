"""The llm-d gateway's endpoint picker (EPP): pod scoring and the in-flight load producer.

**Scoring** (llm-d-inference-scheduler): a weighted sum of prefix-cache affinity (the EPP's
*approximate* index: what it routed where), queue depth (min-max normalised, as GAIE's
queue scorer), KV usage and running-batch load; ties are broken at random. The engine
metrics it scores with are refreshed every ``epp.refresh_seconds`` (the EPP scrapes the
model servers); requests it dispatched since count as queued, so a burst between two
refreshes does not all land on one pod.

**In-flight load** (llm-d-router ``inflight-load-producer``, ``addEstimatedOutputTokens:
false``, the configuration llm-d's token-aware autoscaling guide uses): when a request is
scheduled, each targeted endpoint — the decode pod, and the prefill pod under P/D — is
charged one request and the prompt tokens not cached on it (from the EPP's prefix index).
At the first streamed token every endpoint's tokens are released, and the prefill
endpoint's request; the decode endpoint's request is released at the end of the stream
(or when the request fails). A removed endpoint's series are deleted. Exported as
``llm_d_epp_inflight_tokens`` / ``llm_d_epp_inflight_requests`` with labels
``endpoint_name`` (the pod), ``namespace`` and ``producer_name`` (see :mod:`scaler.sim.otlp_export`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from scaler.sim.request import PrefixCache, Request
from scaler.sim.scenario import Epp

PRODUCER_NAME = "inflight-load-producer"
"""The plugin instance name in llm-d's router values (what the recipe's query selects)."""

_PREFILL_OPEN, _DECODE_OPEN = 1, 2


class Scored(Protocol):
    """What the picker needs of a pod."""

    name: str
    epp_cache: PrefixCache

    def gauges(self) -> tuple[int, int, float]: ...


class InFlightLoad:
    """Per-endpoint in-flight requests and uncached prompt tokens (see the module docstring)."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.tokens: dict[str, int] = {}

    def _add(self, pod: str, requests: int, tokens: int) -> None:
        if pod in self.requests:
            self.requests[pod] += requests
            self.tokens[pod] += tokens

    def register(self, pod: str) -> None:
        self.requests.setdefault(pod, 0)
        self.tokens.setdefault(pod, 0)

    def forget(self, pod: str) -> None:
        self.requests.pop(pod, None)
        self.tokens.pop(pod, None)

    def charge(self, req: Request, decode_tokens: int, prefill_tokens: int | None) -> None:
        req.epp_decode_tokens = decode_tokens
        self._add(req.decode_pod, 1, decode_tokens)
        req.epp_open = _DECODE_OPEN
        if prefill_tokens is not None:
            req.epp_prefill_tokens = prefill_tokens
            self._add(req.prefill_pod, 1, prefill_tokens)
            req.epp_open |= _PREFILL_OPEN

    def first_token(self, req: Request) -> None:
        """StartOfStream: prefill is over everywhere."""
        self._add(req.decode_pod, 0, -req.epp_decode_tokens)
        req.epp_decode_tokens = 0
        if req.epp_open & _PREFILL_OPEN:
            self._add(req.prefill_pod, -1, -req.epp_prefill_tokens)
            req.epp_prefill_tokens = 0
            req.epp_open &= ~_PREFILL_OPEN

    def finished(self, req: Request) -> None:
        """EndOfStream (or the request failed): release whatever it still holds."""
        if req.epp_open & _PREFILL_OPEN:
            self._add(req.prefill_pod, -1, -req.epp_prefill_tokens)
            req.epp_prefill_tokens = 0
        if req.epp_open & _DECODE_OPEN:
            self._add(req.decode_pod, -1, -req.epp_decode_tokens)
            req.epp_decode_tokens = 0
        req.epp_open = 0


class Picker:
    """The EPP's scorers over one role's ready pods."""

    def __init__(self, config: Epp, max_num_seqs: int, rng: random.Random) -> None:
        self.config = config
        self.max_num_seqs = max_num_seqs
        self.rng = rng
        self.dispatched: dict[str, int] = {}
        """Requests sent to each pod since the last metrics refresh."""

    def refreshed(self) -> None:
        self.dispatched.clear()

    def pick(self, pods: Sequence[Scored], req: Request) -> Scored:
        cfg = self.config
        views = []
        for pod in pods:
            running, waiting, kv = pod.gauges()
            views.append((pod, running, waiting + self.dispatched.get(pod.name, 0), kv))
        qmin, qmax = min(v[2] for v in views), max(v[2] for v in views)
        best: list[Scored] = []
        best_score = -1.0
        for pod, running, waiting, kv in views:
            queue = 1.0 if qmax == qmin else (qmax - waiting) / (qmax - qmin)
            score = (
                cfg.prefix_weight * pod.epp_cache.match(req.segments) / req.isl
                + cfg.queue_weight * queue
                + cfg.kv_weight * (1.0 - kv)
                + cfg.load_weight * (1.0 - min(1.0, running / self.max_num_seqs))
            )
            if score > best_score + 1e-9:
                best, best_score = [pod], score
            elif abs(score - best_score) <= 1e-9:
                best.append(pod)
        chosen = best[0] if len(best) == 1 else self.rng.choice(best)
        self.dispatched[chosen.name] = self.dispatched.get(chosen.name, 0) + 1
        return chosen
