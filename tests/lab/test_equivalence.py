"""Virtual time changes nothing but speed: the same short scenario through the demo's path
(the scaler as a child process, OTLP and KEDA over real gRPC, paced by the wall clock) and
through the lab (the same core in-process, on a virtual clock) makes the same scaling
decisions and reaches the same attainment.

Tolerances, and why: the wall-clock run's timers fire a few milliseconds late and its
gRPC calls take time, so a decision may land one HPA sync later when a reading sits near
its threshold (times within one sync period + 0.5 s); the EPP breaks ties between equal
pods at random, and the random stream advances differently once timings differ by a few
milliseconds, so attainment may differ a little (3 percentage points). Start-up is fixed
(20 s) so pod readiness is not random. The KEDA/HPA timers are compressed x0.1 (HPA sync
1.5 s) in both runs to keep the wall-clock run to under a minute.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from scaler.lab import runner
from scaler.sim import demo
from scaler.sim import scenario as scenario_module
from tests.lab.helpers import CHAT, recipe, short_step, write

pytestmark = pytest.mark.slow

TIME_SCALE = 0.1


def _scenario(tmp_path: Path) -> Path:
    profile = {
        "name": "opt125m-l4-fixed-startup",
        "kv_bytes_per_token": 36864, "kv_capacity_tokens": 570000, "max_num_seqs": 256,
        "max_num_batched_tokens": 2048, "max_model_len": 2048,
        "prefill": {"a_ms": 8.0, "b_ms_per_tok": 0.004, "c_ms_per_tok2": 6.0e-7},
        "decode": {"d_ms": 6.0, "e_ms_per_seq": 0.01, "f_ms_per_ctx_tok": 1.4e-4},
        "kv_transfer": {"t0_ms": 1.5, "link_gbps": 0.4},
        "startup_seconds": [20, 20],
    }  # fmt: skip
    doc = short_step(
        name="equivalence",
        profile=profile,
        keda={"time_scale": TIME_SCALE},
        simulation={"scrape_interval_seconds": 0.5},
        phases=[
            {"name": "low", "seconds": 6, "rate": 5, **CHAT},
            {"name": "high", "seconds": 30, "rate": 70, **CHAT},
            {"name": "low-again", "seconds": 14, "rate": 5, **CHAT},
        ],
    )
    return write(tmp_path, doc, "equivalence.yaml")


@pytest.mark.timeout(150)
def test_the_demo_path_and_the_virtual_clock_decide_alike(tmp_path: Path) -> None:
    path = _scenario(tmp_path)
    args = argparse.Namespace(
        duration=None, scenario=str(path), report=str(tmp_path / "demo"), seed=1, quiet=True, manifests=None
    )
    assert demo.main(args) == 0
    wall = json.loads((tmp_path / "demo" / "report.json").read_text())["summary"]
    lab = runner.simulate(scenario_module.load(str(path)), recipe("shipped"), seed=1)

    def decisions(events: list[dict[str, object]]) -> list[tuple[str, str]]:
        return [(str(e["scaledObject"]), str(e["change"]).split(" (")[0]) for e in events]

    assert decisions(lab.events) == decisions(wall["events"]), (lab.events, wall["events"])
    assert len(lab.events) >= 2  # decode scaled out for the burst, and back
    sync = 15 * TIME_SCALE
    for mine, theirs in zip(lab.events, wall["events"], strict=True):
        assert abs(float(mine["t"]) - float(theirs["t"])) <= sync + 0.5, (mine, theirs)
    assert lab.ttft_attainment == pytest.approx(wall["slo_ttft_attainment"], abs=0.03)
    assert lab.itl_token_attainment == pytest.approx(wall["slo_itl_attainment"], abs=0.03)  # both per token
