"""The real demo: scaler subprocess + simulated fleet + KEDA/HPA emulation over real gRPC."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pytest

from scaler.sim import demo
from scaler.sim.scaler_process import ScalerProcess

pytestmark = pytest.mark.slow


def _children() -> set[int]:
    me, found = os.getpid(), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


@pytest.mark.timeout(100)
def test_demo_scales_decode_for_repeated_prompts_and_prefill_for_unique_ones(tmp_path: Path) -> None:
    before = _children()
    started = time.monotonic()
    args = argparse.Namespace(duration=45.0, scenario=None, report=str(tmp_path), seed=1, quiet=True)
    assert demo.main(args) == 0
    wall = time.monotonic() - started
    assert wall < 60, f"the 45 s demo took {wall:.0f} s"
    assert _children() <= before, "the scaler subprocess was left running"

    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "replicas.png").stat().st_size > 10_000
    assert "## Per phase" in (tmp_path / "summary.md").read_text()
    t = report["t"]
    assert t[0] == 0 and t[-1] >= 44
    for role in ("prefill", "decode"):
        series = report["roles"][role]
        for key in ("replicas", "desired", "ttft_p90", "itl_p90", "queue"):
            assert len(series[key]) == len(t), key
        assert series["triggers"], f"no trigger values recorded for {role}"
        assert all(len(v) == len(t) for v in series["triggers"].values())
    assert set(report["roles"]["prefill"]["triggers"]) == {"prefill-waiting", "prefill-prompt-tokens"}

    phases = report["phase"]
    first, second = phases[0], next(p for p in phases if p != phases[0])
    p1 = [i for i, p in enumerate(phases) if p == first]
    p2 = [i for i, p in enumerate(phases) if p == second]
    prefill, decode = report["roles"]["prefill"]["replicas"], report["roles"]["decode"]["replicas"]
    prefill_min = next(o["min"] for o in report["summary"]["scaledObjects"] if o["name"] == "pd-prefill")
    assert max(decode[i] for i in p1) >= 2, "decode did not scale out for the repeated prompt"
    assert max(prefill[i] for i in p1) == max(prefill_min, 1), "prefill left its minimum although prefill was skipped"
    assert max(prefill[i] for i in p2) >= 2, "prefill did not scale out for unique prompts"
    rows = report["summary"]["phases"]
    assert rows[0]["decode_only_fraction"] > 0.95 and rows[1]["decode_only_fraction"] < 0.05
    assert report["summary"]["otlp_exports"]["failed"] == 0


def test_the_scaler_subprocess_is_stopped_even_when_the_body_fails() -> None:
    before = _children()
    with pytest.raises(RuntimeError), ScalerProcess() as scaler:
        assert scaler.ports is not None and scaler.process is not None
        raise RuntimeError("boom")
    assert _children() <= before
