"""summary.md's comparison of each recipe's missed windows with the oracle without foresight's."""

from __future__ import annotations

from scaler.lab import goals, report
from scaler.lab.runner import RunResult


def run(recipe: str, seed: int, missed: list[int], scenario: str = "step", ok: bool = True) -> RunResult:
    return RunResult(scenario, recipe, seed, "opt125m-l4", ok=ok, missed_windows=missed)


def test_missed_windows_are_split_by_whether_the_reactive_oracle_met_them() -> None:
    runs = [
        run(goals.REACTIVE, 1, [300, 330, 360]),
        run(goals.REACTIVE, 2, [300]),
        run("planner", 1, [300, 330, 1530]),  # 1 it met, 2 both missed, 1 only it missed
        run("planner", 2, [300, 600, 630]),  # 2 it met, 1 both missed, 0 only it missed
        run("planner", 3, [0]),  # no reactive run of seed 3: not paired
        run("shipped", 1, [], ok=False),  # failed: not paired
        run("planner", 1, [0], scenario="other"),  # no reactive run of that scenario
    ]
    lines = report.beyond_reactive(runs)
    assert lines[1] == "## Against the oracle without foresight (oracle-reactive)"
    rows = [line for line in lines if line.startswith("| step@")]
    assert rows == ["| step@opt125m-l4 | planner | 2 | 1.5 | 1.5 | 0.5 |"]


def test_without_the_reactive_oracle_there_is_no_section() -> None:
    assert report.beyond_reactive([run("planner", 1, [300]), run("oracle", 1, [])]) == []
