"""``evaluate --seeds A-B`` and ``--baseline``: held-out seeds on their own, and a run paired
seed by seed with an earlier report (:mod:`scaler.lab.compare`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from scaler import cli
from scaler.lab import compare
from scaler.lab.evaluate import parse_seeds
from tests.lab.helpers import short_step, write


def _run(scenario: str, recipe: str, seed: int, att: float, gpu: float, events: int, ok: bool = True) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "profile": "opt125m-l4",
        "recipe": recipe,
        "seed": seed,
        "ok": ok,
        "window_attainment": att,
        "gpu_hours": gpu,
        "scale_events": events,
    }


def test_seeds_are_a_count_a_range_or_a_list() -> None:
    assert parse_seeds("3") == [1, 2, 3]
    assert parse_seeds("4-6") == [4, 5, 6]
    assert parse_seeds("4-4") == [4]
    assert parse_seeds("6,4,4") == [4, 6]
    for bad in ("0", "-1", "6-4", "0-2", "a", "4-x", "1,,2", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(bad)


def test_pairs_are_by_seed_and_the_means_only_over_the_seeds_both_ran() -> None:
    before = [
        _run("bursty", "planner", 1, 0.80, 2.00, 10),
        _run("bursty", "planner", 2, 0.90, 3.00, 20),
        _run("bursty", "planner", 3, 0.50, 9.00, 99),  # not in the new report: not paired
        _run("bursty", "shipped", 1, 0.85, 4.00, 40),
        _run("step", "planner", 1, 0.90, 1.00, 5),
    ]
    after = [
        _run("bursty", "planner", 1, 0.86, 2.20, 12),
        _run("bursty", "planner", 2, 0.90, 3.00, 20),
        _run("bursty", "shipped", 1, 0.85, 4.00, 40),
        _run("step", "planner", 1, 0.0, 0.0, 0, ok=False),  # failed: no pair
        _run("diurnal", "planner", 1, 0.99, 4.00, 3),  # not in the baseline
    ]
    rows, unmatched = compare.compare(after, before)
    by = {r.key: r for r in rows}
    planner = by[("bursty", "opt125m-l4", "planner")]
    assert [p.seed for p in planner.pairs] == [1, 2]
    # means over seeds 1 and 2: windows 85 % -> 88 %, GPU-hours 2.5 -> 2.6, events 15 -> 16
    assert planner.attainment_points == pytest.approx(3.0)
    assert planner.gpu_hours_percent == pytest.approx(4.0)
    assert planner.events == pytest.approx(1.0)
    assert not planner.identical and [p.identical for p in planner.pairs] == [False, True]
    assert by[("bursty", "opt125m-l4", "shipped")].identical
    assert set(unmatched) == {("step", "opt125m-l4", "planner"), ("diurnal", "opt125m-l4", "planner")}
    text = "\n".join(compare.Against(rows, unmatched, "old/report.json").markdown())
    assert "| bursty@opt125m-l4 / planner | 1, 2 | 88.0% | +3.00 | 2.600 | +4.00 | +1.0 |" in text
    assert "1: 80.0% → 86.0% · 2.000 → 2.200 · 10 → 12; 2: identical" in text
    assert "2 compared, 1 identical, 1 changed." in text
    assert "`diurnal@opt125m-l4 / planner`" in text


def test_a_baseline_that_is_not_a_report_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text("{")
    figureless = _run("step", "shipped", 1, 0.9, 1.0, 3) | {"gpu_hours": "1.0"}  # a completed run needs its figures
    (tmp_path / "figureless.json").write_text(json.dumps({"runs": [figureless]}))
    for path, says in (
        (tmp_path / "missing.json", "cannot read"),
        (tmp_path / "broken.json", "is not JSON"),
        (tmp_path / "list.json", "is not an evaluate report"),
        (tmp_path / "figureless.json", "the numbers window_attainment, gpu_hours, scale_events"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["evaluate", "--baseline", str(path), "--report", str(tmp_path / "r"), "--quiet"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert says in err and str(path.name) in err
    assert not (tmp_path / "r").exists()  # refused before any run


def _fleet_recipe(root: Path, decode: int) -> Path:
    """A fixed fleet named ``fleet`` (recipes are named by their directory): one prefill pod,
    ``decode`` decode pods."""
    d = root / "fleet"
    d.mkdir(parents=True)
    (d / "lab.yaml").write_text(f"policy: static\nreplicas: {{prefill: 1, decode: {decode}}}\n")
    return d


@pytest.mark.timeout(240)
def test_held_out_seeds_against_a_baseline_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = short_step(name="tiny", tail_seconds=60)
    doc["phases"] = [{**doc["phases"][0], "seconds": 30}, {**doc["phases"][1], "seconds": 150, "rate": 20}]
    scenario = str(write(tmp_path, doc, "tiny.yaml"))
    one, two = _fleet_recipe(tmp_path / "a", 1), _fleet_recipe(tmp_path / "b", 2)
    base, new = tmp_path / "base", tmp_path / "new"
    common = ["evaluate", "--scenarios", scenario, "--jobs", "1"]
    with pytest.raises(SystemExit) as exit_:
        cli.main([*common, "--recipes", str(one), "static-peak", "--seeds", "2-3", "--report", str(base), "--quiet"])
    assert exit_.value.code == 0
    with pytest.raises(SystemExit) as exit_:
        cli.main([*common, "--recipes", str(two), "static-peak", "--seeds", "3,4", "--report", str(new),
                  "--baseline", str(base / "report.json")])  # fmt: skip
    assert exit_.value.code == 0
    doc_new = json.loads((new / "report.json").read_text())
    assert sorted({r["seed"] for r in doc_new["runs"]}) == [3, 4]
    assert doc_new["matrix"]["seeds"] == 2 and doc_new["matrix"]["seed_numbers"] == [3, 4]
    rows = {r["recipe"]: r for r in doc_new["baseline"]["rows"]}
    # only seed 3 ran in both; the same fixed fleet on the same seed gives the same run
    assert rows["static-peak"]["seeds"] == [3] and rows["static-peak"]["identical"]
    fleet = rows["fleet"]
    assert fleet["seeds"] == [3] and not fleet["identical"]
    runs = {(r["recipe"], r["seed"]): r for r in doc_new["runs"]}
    before = {(r["recipe"], r["seed"]): r for r in json.loads((base / "report.json").read_text())["runs"]}
    assert fleet["gpu_hours"] == pytest.approx(runs[("fleet", 3)]["gpu_hours"])
    assert fleet["gpu_hours_before"] == pytest.approx(before[("fleet", 3)]["gpu_hours"])
    assert fleet["gpu_hours"] == pytest.approx(1.5 * fleet["gpu_hours_before"])  # 1P+2D against 1P+1D
    summary = (new / "summary.md").read_text()
    assert "## Against the baseline" in summary and "2 seed(s): 3, 4" in summary
    assert "2 compared, 1 identical, 1 changed." in summary
    assert "## Against the baseline" in capsys.readouterr().out  # printed too


@pytest.mark.timeout(240)
def test_a_recipe_run_again_alone_is_judged_against_the_baselines_other_recipes(tmp_path: Path) -> None:
    doc = short_step(name="tiny", tail_seconds=60)
    doc["phases"] = [{**doc["phases"][0], "seconds": 30}, {**doc["phases"][1], "seconds": 150, "rate": 20}]
    scenario = str(write(tmp_path, doc, "tiny.yaml"))
    planner = _fleet_recipe(tmp_path / "v1", 1).rename(tmp_path / "v1" / "planner")  # judged by its name
    base, new = tmp_path / "base", tmp_path / "new"
    common = ["evaluate", "--scenarios", scenario, "--jobs", "1", "--seeds", "1", "--quiet"]
    with pytest.raises(SystemExit) as exit_:
        cli.main([*common, "--recipes", str(planner), "oracle", "static-peak", "--report", str(base)])
    assert exit_.value.code == 0
    (planner / "lab.yaml").write_text("policy: static\nreplicas: {prefill: 1, decode: 2}\n")
    with pytest.raises(SystemExit) as exit_:
        cli.main([*common, "--recipes", str(planner), "--report", str(new), "--baseline", str(base)])
    assert exit_.value.code == 0
    runs = {r["recipe"]: r for r in json.loads((base / "report.json").read_text())["runs"]}
    doc_new = json.loads((new / "report.json").read_text())
    assert [r["recipe"] for r in doc_new["runs"]] == ["planner"]  # the others were not run again
    (verdict,) = doc_new["goals"]
    pairs = {p["recipe"]: p for p in verdict["pairs"]}
    assert sorted(pairs) == ["oracle", "static-peak"]
    assert pairs["oracle"]["their_gpu_hours"] == pytest.approx(runs["oracle"]["gpu_hours"])
    assert verdict["cost"] == pytest.approx(doc_new["runs"][0]["gpu_hours"] / runs["oracle"]["gpu_hours"], rel=1e-5)
    summary = (new / "summary.md").read_text()
    assert (
        "## Against the planner's goals" in summary and "The runs of oracle, static-peak are the baseline's." in summary
    )
