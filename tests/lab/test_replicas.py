"""Issue 17 in the evaluation lab: a scaler replica killed halfway changes nothing.

Three in-process replicas (each a real ``Service`` core), every export fanned out to every
live one, KEDA's calls round-robin with one retry; replica 1 killed halfway and restarted
30 s later from a peer's snapshot. Compared with the same seed undisturbed (and with the
single scaler the lab runs by default), KEDA gets the same answer to every call, so the
decisions, the attainment and the GPU-hours are equal — exactly, because the lab delivers
each export to every replica at the same virtual instant (no export-interval skew). The
controls show that the comparison can fail: a restart without the peer's snapshot answers
differently, and a single replica's outage fails KEDA's calls and changes the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scaler import cli
from scaler.lab import replicas, runner
from scaler.lab.matrix import load_scenario
from scaler.lab.recipes import load as load_recipe
from scaler.lab.replicas import Failover
from scaler.lab.runner import RunResult
from tests.lab.helpers import load, recipe, short_step, write

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scaler" / "lab" / "scenarios"
HALFWAY = Failover(3, kill_at=0.5, restart_after=30)
DECIDED = ("events", "window_attainment", "ttft_attainment", "itl_attainment", "gpu_hours", "scale_events", "failed")


def _decided(result: RunResult) -> dict[str, object]:
    return {key: getattr(result, key) for key in DECIDED}


def _ha(result: RunResult) -> dict[str, Any]:
    assert result.ok and result.ha is not None, result.error
    return result.ha


@pytest.mark.timeout(120)
def test_a_replica_killed_halfway_changes_no_answer_decision_attainment_or_gpu_hours(tmp_path: Path) -> None:
    scenario, shipped = load(tmp_path), recipe("shipped")
    single = runner.simulate(scenario, shipped, 1)
    undisturbed = runner.simulate(scenario, shipped, 1, failover=Failover(3))
    killed = runner.simulate(scenario, shipped, 1, failover=HALFWAY)
    calm, hit = _ha(undisturbed), _ha(killed)

    assert single.events and single.scale_events > 0  # the scenario makes the recipe scale
    assert _decided(killed) == _decided(undisturbed) == _decided(single)
    assert hit["answers_sha256"] == calm["answers_sha256"]  # every call, answered alike at the same time

    half = scenario.duration / 2
    assert hit["history"] == [
        {"t": half, "replica": "replica-1", "event": "killed"},
        {
            "t": half + 30,
            "replica": "replica-1",
            "event": "restarted",
            "peer": "replica-2",
            "bytes": hit["history"][1]["bytes"],
            "series": hit["history"][1]["series"],
            "ready": True,
        },
    ]
    assert hit["history"][1]["series"] > 100
    # the 30 s outage: about a third of KEDA's calls in it landed on the dead replica, each retried
    assert calm["on_killed"] == 0 and hit["on_killed"] >= 20
    assert hit["killed_failed_after_retry"] == 0
    # what fails after the retry is the first scrape interval, before the data (no data yet: every
    # replica holds KEDA off with UNAVAILABLE, as the single scaler does), in both runs alike
    assert hit["failed_after_retry"] == calm["failed_after_retry"] > 0
    assert hit["last_failed_after_retry_at"] == calm["last_failed_after_retry_at"] <= scenario.scrape_interval_seconds
    assert hit["calls"] == calm["calls"]
    # the restarted replica answered data-reading calls, not only GetMetricSpec
    answered = hit["answered_by_restarted"]
    assert isinstance(answered, dict) and answered.get("GetMetrics", 0) > 20 and answered.get("IsActive", 0) > 20


@pytest.mark.timeout(120)
def test_the_comparison_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Controls: without the peer's snapshot the restarted replica answers from a partial store
    (other answers); with a single replica the outage fails KEDA's calls and changes the run."""
    scenario, shipped = load(tmp_path), recipe("shipped")
    undisturbed = _ha(runner.simulate(scenario, shipped, 1, failover=Failover(3)))
    single = runner.simulate(scenario, shipped, 1)
    alone = runner.simulate(scenario, shipped, 1, failover=Failover(1, kill_at=0.5, restart_after=30))
    lone = _ha(alone)
    assert lone["killed_failed_after_retry"] == lone["on_killed"] >= 20
    assert lone["history"][1]["ready"] is False  # no peer: empty, warming up
    assert _decided(alone) != _decided(single)

    async def no_peer(self: replicas.Replicas, index: int) -> None:
        return None

    monkeypatch.setattr(replicas.Replicas, "_peer_snapshot", no_peer)
    cold = _ha(runner.simulate(scenario, shipped, 1, failover=HALFWAY))
    assert "peer" not in cold["history"][1]
    assert cold["answers_sha256"] != undisturbed["answers_sha256"]


@pytest.mark.timeout(120)
def test_external_push_streams_on_the_killed_replica_reconnect_and_nothing_changes(tmp_path: Path) -> None:
    scenario = load(tmp_path)
    push = load_recipe(REPO / "manifests" / "keda-push")
    undisturbed = runner.simulate(scenario, push, 1, failover=Failover(3))
    killed = runner.simulate(scenario, push, 1, failover=HALFWAY)
    hit = _ha(killed)
    assert _decided(killed) == _decided(undisturbed)
    assert hit["streams_broken"] >= 1 and hit["killed_failed_after_retry"] == 0
    assert hit["answers_sha256"] == _ha(undisturbed)["answers_sha256"]


@pytest.mark.timeout(180)
def test_evaluate_runs_the_replicas_and_reports_the_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = short_step(name="tiny", tail_seconds=60)
    doc["phases"] = [{**doc["phases"][0], "seconds": 30}, {**doc["phases"][1], "seconds": 150, "rate": 20}]
    scenario = write(tmp_path, doc, "tiny.yaml")
    report = tmp_path / "report"
    argv = ["evaluate", "--scenarios", str(scenario), "--recipes", "shipped", "static-peak",
            "--replicas", "3", "--kill-replica-at", "0.5", "--restart-after", "20",
            "--jobs", "1", "--quiet", "--report", str(report)]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0, capsys.readouterr().err
    runs = {r["recipe"]: r for r in json.loads((report / "report.json").read_text())["runs"]}
    ha = runs["shipped"]["ha"]
    assert ha["replicas"] == 3 and [e["event"] for e in ha["history"]] == ["killed", "restarted"]
    assert ha["history"][1]["t"] - ha["history"][0]["t"] == 20
    assert ha["on_killed"] > 0 and ha["killed_failed_after_retry"] == 0
    assert runs["static-peak"]["ha"] is None  # a fixed fleet asks no scaler
    summary = (report / "summary.md").read_text()
    assert "Scaler: 3 scaler replicas, replica 1 killed at 0.5 of each scenario and restarted 20 s later" in summary

    for bad, named in ((["--replicas", "0"], "--replicas"), (["--kill-replica-at", "1"], "--kill-replica-at")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["evaluate", *bad, "--report", str(tmp_path / "unused")])
        assert exit_.value.code == 2
        assert named in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_a_loaded_machine_changes_no_decision() -> None:
    """The comparisons above hold on a busy machine too: a query's slices (where it lets the
    event loop run, and so where a scrape due at the same virtual instant may land) are timed
    on the lab's clock, not the wall clock. Here a thread competes for the interpreter, as a
    loaded machine would; the run decides exactly as it does alone. (With the slices on the
    wall clock, such runs scaled 25 or 27 times, at different GPU-hours.)"""
    import threading

    scenario, shipped = load_scenario(str(SCENARIOS / "step-up-down.yaml")), recipe("shipped")
    calm = runner.simulate(scenario, shipped, 1)
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            sum(range(1000))

    rival = threading.Thread(target=hog, daemon=True)
    rival.start()
    try:
        loaded = runner.simulate(scenario, shipped, 1)
    finally:
        stop.set()
        rival.join()
    assert _decided(loaded) == _decided(calm)
