"""The planner's goals judged from a report's runs (scaler.lab.goals): the dominance rule with
its slack, seeds paired per comparison, the oracle's misses excused, stability per recipe."""

from __future__ import annotations

import pytest

from scaler.lab import goals
from scaler.lab.runner import RunResult


def run(recipe: str, seed: int, attainment: float, gpu: float, *, events: int = 0, missed: list[int] | None = None,
        scenario: str = "step", ok: bool = True) -> RunResult:  # fmt: skip
    return RunResult(scenario, recipe, seed, "opt125m-l4", ok=ok, window_attainment=attainment, gpu_hours=gpu,
                     scale_events=events, missed_windows=missed or [], simulated_seconds=600.0)  # fmt: skip


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [
        ((0.90, 2.00), (0.90, 2.00), True),  # level on both
        ((0.95, 1.90), (0.90, 2.00), True),  # better on both
        ((0.95, 2.03), (0.90, 2.00), True),  # better attainment, 1.5 % more GPU-hours
        ((0.95, 2.05), (0.90, 2.00), False),  # better attainment, 2.5 % more
        ((0.885, 1.90), (0.90, 2.00), True),  # cheaper, 1.5 points lower
        ((0.875, 1.90), (0.90, 2.00), False),  # cheaper, 2.5 points lower
        ((0.90, 2.01), (0.90, 2.00), False),  # level attainment is not strictly better
        ((0.89, 2.00), (0.90, 2.00), False),  # level GPU-hours are not strictly better
        ((0.85, 2.10), (0.90, 2.00), False),
    ],
)
def test_dominance_allows_two_points_or_two_per_cent_against_a_strict_gain(
    mine: tuple[float, float], theirs: tuple[float, float], expected: bool
) -> None:
    assert goals.dominates(*mine, *theirs) is expected


def test_each_goal_is_judged_on_the_seeds_both_recipes_completed() -> None:
    runs = [
        run("planner", 1, 0.95, 1.10, events=6, missed=[0]),  # 20 windows of 30 s
        run("planner", 2, 0.90, 1.20, events=8, missed=[0, 300]),
        run("planner", 3, 0.50, 9.00, events=40),  # no other recipe ran seed 3
        run("oracle", 1, 0.95, 1.00, missed=[0]),  # its miss at 0 s is excused
        run("oracle", 2, 1.00, 1.00),
        run("oracle-reactive", 2, 0.95, 1.00, missed=[300]),  # excuses seed 2's miss at 300 s, in brackets
        run("shipped", 1, 0.80, 1.50, events=20),
        run("shipped", 2, 0.80, 1.50, events=12),
        run("kedify-vllm", 1, 0.99, 2.00, events=10),
        run("kedify-vllm", 2, 0.99, 2.00, ok=False),  # failed: seed 1 alone is paired
        run("shipped", 1, 0.10, 0.10, scenario="other"),  # no planner run there: no verdict
    ]
    (verdict,) = goals.judge(runs)
    assert (verdict.scenario, verdict.seeds) == ("step@opt125m-l4", 3)
    pairs = {p.recipe: p for p in verdict.pairs}
    assert (pairs["oracle"].seeds, pairs["shipped"].seeds, pairs["kedify-vllm"].seeds) == (2, 2, 1)
    assert pairs["oracle-reactive"].seeds == 1
    assert pairs["shipped"].attainment == pytest.approx(0.925) and pairs["shipped"].dominates
    assert not pairs["kedify-vllm"].dominates  # 0.95 against 0.99 at less: 4 points under
    assert not pairs["oracle"].dominates and not verdict.dominant
    assert verdict.cost == pytest.approx(1.15)
    # seed 1: its miss excused (the oracle missed it too), 20/20; seed 2: 2 of 20 missed
    assert verdict.windows == pytest.approx((1.0 + 0.9) / 2)
    assert verdict.reactive_windows == pytest.approx(0.95)  # seed 2 alone: 19 of 20
    stability = {s.recipe: s for s in verdict.stability}
    assert stability["shipped"].holds and (stability["shipped"].events, stability["shipped"].their_events) == (7, 16)
    assert not stability["kedify-vllm"].holds  # 6 events against half of 10
    assert verdict.to_json()["dominant"] is False


def test_the_summary_section_counts_every_goal() -> None:
    runs = [
        run("planner", 1, 1.00, 1.00, events=2),
        run("oracle", 1, 1.00, 1.00),
        run("shipped", 1, 0.90, 2.00, events=10),
        run("planner", 1, 0.80, 3.00, events=9, missed=[0, 30, 60, 90], scenario="burst"),
        run("oracle", 1, 1.00, 2.00, scenario="burst"),
        run("shipped", 1, 0.85, 2.90, events=10, scenario="burst"),
    ]
    lines = goals.markdown(goals.judge(runs))
    assert lines[1] == "## Against the planner's goals"
    rows = [line for line in lines if line.startswith("| burst@") or line.startswith("| step@")]
    assert rows == [
        "| burst@opt125m-l4 | 1 | oracle (100.0% · 2.00), shipped (85.0% · 2.90) | 1.500× ✗ | 80.0% ✗ "
        "| 9.0 (shipped 5.0) ✗ |",
        "| step@opt125m-l4 | 1 | none ✓ | 1.000× ✓ | 100.0% ✓ | 2.0 (shipped 5.0) ✓ |",
    ]
    assert lines[-4:] == [
        "- Dominance: 1 of 2 scenarios against every recipe; 2 of 4 pairs, 1 of 2 against the threshold recipes.",
        "- Cost ≤ 1.15× the oracle: 1 of 2 scenarios.",
        "- SLO ≥ 99% of windows: 1 of 2 scenarios.",
        "- Stability against shipped: 1 of 2 scenarios.",
    ]


def test_without_another_recipe_beside_the_planner_there_is_no_section() -> None:
    assert goals.markdown(goals.judge([run("planner", 1, 1.0, 1.0), run("shipped", 2, 1.0, 1.0)])) == []
    assert goals.judge([run("shipped", 1, 1.0, 1.0)]) == []


def test_an_older_reports_runs_are_borrowed_with_the_keys_they_lack_defaulted() -> None:
    mine = [run("planner", 1, 0.9, 1.0, missed=[0, 30])]
    baseline = [
        {"scenario": "step", "profile": "opt125m-l4", "recipe": "oracle", "seed": 1, "ok": True,
         "window_attainment": 1.0, "gpu_hours": 1.0, "scale_events": 2, "missed_windows": [30]},
        {"scenario": "step", "profile": "opt125m-l4", "recipe": "planner", "seed": 1, "ok": True,
         "window_attainment": 0.1, "gpu_hours": 9.0, "scale_events": 2},  # this run has its own: not borrowed
        {"scenario": "step", "recipe": "shipped", "seed": 1, "ok": True,  # no profile, no missed windows
         "window_attainment": 0.8, "gpu_hours": 2.0, "scale_events": 9, "missed_windows": "all"},
    ]  # fmt: skip
    borrowed = goals.borrow(mine, baseline)
    assert [(r.recipe, r.key, r.missed_windows) for r in borrowed] == [
        ("oracle", "step@opt125m-l4", [30]),
        ("shipped", "step", []),
    ]
    (verdict,) = goals.judge([*mine, *borrowed])
    assert [p.recipe for p in verdict.pairs] == ["oracle"]  # the profile-less run is another scenario key
    assert verdict.windows == pytest.approx(1 - 1 / 20)  # the miss at 30 s excused
