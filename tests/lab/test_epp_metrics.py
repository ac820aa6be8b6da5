"""The simulated EPP exports what llm-d's token-aware recipe queries, under the names it queries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scaler._gen import externalscaler_pb2 as pb
from scaler.lab import vtime
from scaler.lab.inproc import EPOCH, InProcessScaler
from scaler.model import metric_name
from scaler.sim.request import Request
from scaler.sim.run import Collectors, Simulation
from tests.lab.helpers import load, recipe
from tests.sim.helpers import Log


class _Observer(Log):
    def arrived(self, requests: list[Request]) -> None:
        return None


def test_the_recipes_own_queries_read_the_epp_and_vllm_gauges(tmp_path: Path) -> None:
    scenario = load(tmp_path)
    objects = {so.target: so for so in recipe("llmd-token-aware").scaled_objects(scenario)}
    prefill_meta = dict(objects[scenario.prefill_deployment].triggers[0].metadata)
    decode_meta = dict(objects[scenario.decode_deployment].triggers[0].metadata)

    async def main() -> tuple[list[tuple[float, float, float, float]], dict[str, str]]:
        loop = asyncio.get_running_loop()
        sim = Simulation(scenario, 5, _Observer())
        sim.clock = loop.time
        scaler = InProcessScaler(loop.time)
        collectors = Collectors(sim, EPOCH)
        seen = []
        for t in range(62, 92, 2):  # the high phase (40 req/s of unique chat prompts)
            await asyncio.sleep(t - loop.time())
            sim.sync(float(t))
            collectors._epp_next = t  # scrape the EPP (and every pod) right now
            for pod in sim.fleet.pods():
                collectors._next[pod.name] = t
            await scaler.export(collectors.scrape(float(t)))
            values = []
            for meta in (prefill_meta, decode_meta):
                ref = pb.ScaledObjectRef(name="so", namespace="llm-d", scalerMetadata=meta)
                reply = await scaler.get_metrics(pb.GetMetricsRequest(scaledObjectRef=ref))
                values.append(reply.metricValues[0].metricValueFloat)
            fleet = sim.fleet
            tokens = sum(n for pod, n in fleet.load.tokens.items() if "prefill" in pod)
            kv = sum(p.gauges()[2] for p in fleet.by_role("decode").pods if p.state != "starting")
            seen.append((values[0], float(tokens), values[1], kv))
        (series,) = [s for s in scaler.store.series() if metric_name(s.labels) == "llm_d_epp_inflight_tokens"
                     and "prefill" in dict(s.labels)["endpoint_name"]]  # fmt: skip
        return seen, dict(series.labels)

    seen, labels = vtime.run(main)
    divisor = float(prefill_meta["query"].split("/")[1].split(")")[0])
    for backlog, tokens, kv_value, kv in seen:
        assert backlog == pytest.approx(tokens / divisor)
        assert kv_value == pytest.approx(kv) and kv > 0
    assert sum(1 for _, tokens, _, _ in seen if tokens > 0) >= 3
    assert labels["producer_name"] == "inflight-load-producer" and labels["namespace"] == "llm-d"
    assert labels["endpoint_name"].startswith(scenario.prefill_deployment)
