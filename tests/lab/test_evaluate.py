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
    # the recipe failed after the scenario loaded: keyed with the scenario's completed runs
    assert bad["profile"] == by[("tiny", "shipped")]["profile"] == "opt125m-l4"
    typo = [r for r in runs if r["scenario"] == "typo"]
    assert len(typo) == 3 and all(not r["ok"] and "typo.yaml" in r["error"] and "'phasse'" in r["error"] for r in typo)
    assert {r["profile"] for r in typo} == {""}  # the scenario never loaded: its profile is unknown
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


@pytest.mark.timeout(180)
def test_without_matplotlib_the_json_and_markdown_are_written_and_the_gap_named(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shim"), os.environ.get("PYTHONPATH", "")])}
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "scaler", "evaluate", "--scenarios", str(_tiny(tmp_path)),
           "--recipes", "static-peak", "--jobs", "1", "--quiet", "--report", str(report)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=170, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "matplotlib" in proc.stderr and "pip install 'keda-otel-scaler[demo]'" in proc.stderr
    assert json.loads((report / "report.json").read_text())["runs"][0]["ok"]
    assert "No plots: matplotlib" in (report / "summary.md").read_text()
    assert not list(report.glob("*.png"))


@pytest.mark.timeout(180)
def test_runs_in_worker_processes_give_what_they_give_in_this_one(tmp_path: Path) -> None:
    from scaler.lab import matrix, recipes

    scenario = str(_tiny(tmp_path))
    jobs = [matrix.Job(scenario, "", str(recipes.builtin_dir() / name), 1) for name in ("static-peak", "oracle")]
    seen: list[matrix.RunResult] = []
    pooled = matrix.execute(jobs, 2, seen.append)
    local = [matrix.run_job(job) for job in jobs]
    assert seen == pooled and len(pooled) == 2
    volatile = ("wall_seconds", "cpu_seconds")

    def figures(r: matrix.RunResult) -> dict[str, object]:
        return {k: v for k, v in r.to_json().items() if k not in volatile}

    assert sorted(map(str, map(figures, pooled))) == sorted(map(str, map(figures, local)))
