"""Short lab scenarios and the built-in recipes, for tests that run the lab for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from scaler.lab import recipes
from scaler.lab.recipes import Recipe
from scaler.sim import scenario as scenario_module
from scaler.sim.scenario import Scenario

CHAT = {  # the Azure LLM inference trace's conversation lengths (lognormal fits)
    "isl": {"dist": "lognormal", "mu": 6.63, "sigma": 0.99},
    "osl": {"dist": "lognormal", "mu": 5.02, "sigma": 0.86},
}


def short_step(**overrides: Any) -> dict[str, Any]:
    """A 6-minute load step on opt-125m/L4: 4 req/s, then 40 req/s (needs ~2 decode pods)."""
    doc: dict[str, Any] = {
        "name": "short-step",
        "description": "a load step, short enough for a test",
        "profile": "opt125m-l4",
        "slo": {"ttft_p90_seconds": 1.0, "itl_p90_seconds": 0.05},
        "fleet": {"limits": {"prefill": [1, 2], "decode": [1, 3]}, "drain_seconds": 600},
        "tail_seconds": 120,
        "phases": [
            {"name": "low", "seconds": 60, "rate": 4, **CHAT},
            {"name": "high", "seconds": 300, "rate": 40, **CHAT},
        ],
    }
    doc.update(overrides)
    return doc


def write(tmp_path: Path, doc: dict[str, Any], name: str = "short-step.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def load(tmp_path: Path, doc: dict[str, Any] | None = None) -> Scenario:
    return scenario_module.load(str(write(tmp_path, doc or short_step())))


def recipe(name: str) -> Recipe:
    return recipes.load(recipes.builtin_dir() / name)
