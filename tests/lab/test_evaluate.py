"""``keda-otel-scaler evaluate`` end to end: the report, and broken inputs reported while the rest runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaler import cli
from tests.lab.helpers import short_step, write

RUN_KEYS = {
    "scenario",
    "recipe",
    "seed",
    "ok",
    "error",
    "ttft_attainment",
    "itl_attainment",
    "window_attainment",
    "gpu_hours",
    "gpu_hours_prefill",
    "gpu_hours_decode",
    "scale_events",
    "simulated_seconds",
    "wall_seconds",
}  # fmt: skip  (INTERFACE.md §8)


def _tiny(tmp_path: Path) -> Path:
    doc = short_step(name="tiny", tail_seconds=60)
    doc["phases"] = [{**doc["phases"][0], "seconds": 30}, {**doc["phases"][1], "seconds": 150, "rate": 20}]
    return write(tmp_path, doc, "tiny.yaml")


def _bad_query_recipe(tmp_path: Path) -> Path:
    d = tmp_path / "bad-query"
    d.mkdir()
    (d / "decode.yaml").write_text(
        """apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: broken-decode}
spec:
  scaleTargetRef: {name: pd-llm-d-modelservice-decode}
  triggers:
    - type: external
      metadata:
        scalerAddress: keda-otel-scaler.keda.svc:4318
        query: 'sum(rate(vllm:generation_tokens_total[1m]'
        targetValue: "100"
"""
    )
    return d


@pytest.mark.timeout(180)
def test_a_matrix_with_a_broken_recipe_and_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = _tiny(tmp_path)
    broken_scenario = write(tmp_path, {**short_step(name="typo"), "phasse": []}, "typo.yaml")
    report = tmp_path / "report"
    argv = [
        "evaluate", "--scenarios", str(scenario), str(broken_scenario),
        "--recipes", "static-peak", "shipped", str(_bad_query_recipe(tmp_path)),
        "--jobs", "1", "--report", str(report), "--quiet",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 1  # something failed, and the report says what
    doc = json.loads((report / "report.json").read_text())
    runs = doc["runs"]
    assert all(set(r) >= RUN_KEYS for r in runs)
    by = {(r["scenario"], r["recipe"]): r for r in runs}
    assert len(runs) == 6
    for name in ("static-peak", "shipped"):
        ok = by[("tiny", name)]
        assert ok["ok"] and ok["error"] is None and 0 <= ok["window_attainment"] <= 1 and ok["gpu_hours"] > 0
    bad = by[("tiny", "bad-query")]
    assert not bad["ok"] and "decode.yaml" in bad["error"] and "'query'" in bad["error"]
    typo = [r for r in runs if r["scenario"] == "typo"]
    assert len(typo) == 3 and all(not r["ok"] and "typo.yaml" in r["error"] and "'phasse'" in r["error"] for r in typo)
    summary = (report / "summary.md").read_text()
    assert "| tiny | opt125m-l4 |" in summary and "## Errors" in summary
    assert list(report.glob("pareto-*.png"))
    assert "failed: tiny / bad-query" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["evaluate", "--recipes", "no-such-recipe"],
        ["evaluate", "--seeds", "0"],
        ["evaluate", "--profiles", "tpu"],
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*argv, "--report", str(tmp_path)])
        assert exit_.value.code == 2
    assert "no-such-recipe" in capsys.readouterr().err
