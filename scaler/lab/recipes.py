"""Recipes as data: a directory per recipe, named by the directory.

Two forms (``docs/lab.md`` has the details):

* **ScaledObjects** — the same files ``manifests/`` deploys: every ScaledObject in the
  directory (rendered like ``kubectl apply -k``/``-f``). KEDA and the HPA are emulated from
  them, talking to the real scaler. An optional ``lab.yaml`` adds a ``description`` and
  per-profile ``calibration``: JSON6902 patches (kustomize's form) applied to a ScaledObject
  on that profile only, for the hardware constants a recipe tells its users to measure (a
  patch's strings may hold ``$(SLO_TTFT_P90)``/``$(SLO_ITL_P90)``: the scenario's SLO
  targets, for triggers that take the SLO).
* **Policies** — a ``lab.yaml`` with ``policy``: ``static`` (fixed ``replicas`` per role, a
  number or ``max``: the scenario's pod limit), ``static-best`` (the smallest fixed counts
  that meet the SLO, found by search) or ``oracle`` (clairvoyant: sized from the future
  arrival rate, see :mod:`scaler.lab.policies`; optional ``headroom``, and ``foresight: false``
  for the same sizing from the present rate only).

The lab holds every recipe to the scenario's pod limits (``fleet.limits``): each
ScaledObject's ``minReplicaCount``/``maxReplicaCount`` are replaced by them, so recipes
compete for the same GPUs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from scaler import config
from scaler.sim import capacity, manifests
from scaler.sim.manifests import ManifestError, ScaledObject
from scaler.sim.scenario import Role, Scenario
from scaler.sim.validate import SpecError, mapping, number, strict, text

LAB_FILE = "lab.yaml"
Policy = Literal["scaledobjects", "static", "static-best", "oracle"]
POLICIES: tuple[Policy, ...] = ("scaledobjects", "static", "static-best", "oracle")
_LAB_KEYS = frozenset({"description", "policy", "replicas", "headroom", "foresight", "calibration", "settings"})


class RecipeError(ValueError):
    """A recipe cannot run; the message names the file and the key."""


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    policy: Policy
    description: str = ""
    documents: tuple[tuple[dict[str, Any], str], ...] = ()
    """Rendered ScaledObjects with the file each came from."""
    calibration: Mapping[str, tuple[tuple[str, list[dict[str, Any]]], ...]] = field(default_factory=dict)
    """Per profile: (ScaledObject name, JSON6902 operations)."""
    replicas: Mapping[Role, int | None] = field(default_factory=dict)
    """``static``: fixed replicas per role (None: the scenario's maximum)."""
    headroom: capacity.Headroom = field(default_factory=capacity.Headroom)
    foresight: bool = True
    """``oracle``: sized from the future rate (True) or from the rate up to now only."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """The scaler's environment for this recipe (what its manifests deploy), e.g.
    ``METRIC_STORE_RETENTION_SECONDS``; the service defaults otherwise."""

    def scaled_objects(self, scenario: Scenario) -> list[ScaledObject]:
        """The ScaledObjects on this scenario (and its profile), held to its pod limits."""
        docs = [(copy.deepcopy(d), src) for d, src in self.documents if d.get("kind") == "ScaledObject"]
        for target, ops in self.calibration.get(scenario.profile.name, ()):
            where = f"{self.path / LAB_FILE}: calibration.{scenario.profile.name}"
            matched = [d for d, _ in docs if (d.get("metadata") or {}).get("name") == target]
            if not matched:
                raise RecipeError(f"{where}: no ScaledObject named {target!r} in {self.path}")
            for doc in matched:
                try:
                    manifests.json_patch(doc, _with_slo(ops, scenario), where)
                except (KeyError, IndexError, ValueError, TypeError) as exc:
                    raise RecipeError(f"{where}: patch does not apply: {exc!r}") from None
        fleet = {scenario.prefill_deployment: "prefill", scenario.decode_deployment: "decode"}
        out: list[ScaledObject] = []
        for doc, src in docs:
            try:
                so = manifests.parse(doc, src)
            except ManifestError as exc:
                raise RecipeError(str(exc)) from None
            role = fleet.get(so.target)
            if role is None:
                raise RecipeError(
                    f"{src}: spec.scaleTargetRef.name {so.target!r} is not a Deployment of the fleet "
                    f"({', '.join(fleet)})"
                )
            if any(o.target == so.target for o in out):
                raise RecipeError(f"{src}: a second ScaledObject targets Deployment {so.target!r}")
            limits = scenario.limits.get(role)  # type: ignore[call-overload]
            if limits is not None:
                so = replace(so, min_replicas=limits[0], max_replicas=limits[1])
            out.append(so if so.namespace else replace(so, namespace=scenario.namespace))
        if not out:
            raise RecipeError(f"{self.path}: no ScaledObject (and no {LAB_FILE} with a policy)")
        return out


SLO_VARIABLES = {"$(SLO_TTFT_P90)": "ttft_p90_seconds", "$(SLO_ITL_P90)": "itl_p90_seconds"}
"""Variables a calibration patch's string values may hold: the scenario's SLO targets on its
profile, as durations (``2s``, ``50ms``), for a recipe whose triggers take the SLO itself."""


def _with_slo(ops: list[dict[str, Any]], scenario: Scenario) -> list[dict[str, Any]]:
    def duration(seconds: float) -> str:
        return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            for var, attr in SLO_VARIABLES.items():
                value = value.replace(var, duration(getattr(scenario.slo, attr)))
            return value
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    return [sub(op) for op in ops]


def builtin_dir() -> Path:
    return Path(str(resources.files("scaler.lab").joinpath("recipes")))


def builtin() -> list[Path]:
    return sorted(p for p in builtin_dir().iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _calibration(raw: Any, where: str) -> dict[str, tuple[tuple[str, list[dict[str, Any]]], ...]]:
    out = {}
    for profile, entries in mapping(raw, where).items():
        w = f"{where}.{profile}"
        if not isinstance(entries, list):
            raise SpecError(f"{w}: expected a list of {{target: {{name}}, patch: [...]}}")
        items = []
        for i, entry in enumerate(entries):
            e = mapping(entry, f"{w}[{i}]")
            strict(e, frozenset({"target", "patch"}), f"{w}[{i}]")
            name = mapping(e.get("target"), f"{w}[{i}].target").get("name")
            ops = e.get("patch")
            if not name or not isinstance(ops, list) or not all(isinstance(o, dict) and "op" in o for o in ops):
                raise SpecError(f"{w}[{i}]: needs target.name and a JSON6902 patch list")
            items.append((str(name), ops))
        out[str(profile)] = tuple(items)
    return out


def _replicas(raw: Any, where: str) -> dict[Role, int | None]:
    data = mapping(raw, where)
    strict(data, frozenset({"prefill", "decode"}), where)
    out: dict[Role, int | None] = {}
    for role in ("prefill", "decode"):
        value = data.get(role, "max")
        if value == "max":
            out[role] = None
        elif type(value) is int and value >= 0:
            out[role] = value
        else:
            raise SpecError(f"{where}.{role}: {value!r} is not a replica count or 'max'")
    return out


def _settings(lab: Mapping[str, Any], where: Path) -> dict[str, str]:
    raw = mapping(lab.get("settings", {}), f"{where}: settings")
    out = {str(k): str(v) for k, v in raw.items()}
    try:
        config.load({}, out)
    except config.SettingsError as exc:
        raise SpecError(f"settings: {exc}") from None
    return out


def _flag(lab: Mapping[str, Any], key: str, where: Path) -> bool:
    value = lab.get(key, True)
    if not isinstance(value, bool):
        raise SpecError(f"{where}: {key}: {value!r} is not true or false")
    return value


def load(path: Path) -> Recipe:
    """Read and check a recipe directory; raises RecipeError naming the file and the key."""
    if not path.is_dir():
        raise RecipeError(f"{path}: not a recipe directory")
    lab: Mapping[str, Any] = {}
    lab_path = path / LAB_FILE
    try:
        if lab_path.exists():
            lab = mapping(yaml.safe_load(lab_path.read_text()) or {}, str(lab_path))
            strict(lab, _LAB_KEYS, str(lab_path))
        policy = lab.get("policy", "scaledobjects")
        if policy not in POLICIES:
            raise SpecError(f"{lab_path}: policy: {policy!r} is not one of {', '.join(POLICIES)}")
        if "foresight" in lab and policy != "oracle":
            raise SpecError(f"{lab_path}: foresight: applies to policy: oracle only, not {policy}")
        recipe = Recipe(path.name, path, policy, text(lab, "description"), settings=_settings(lab, lab_path))
        if policy == "scaledobjects":
            docs = tuple((d, src) for d, src in manifests.render_sources(path) if Path(src).name != LAB_FILE)
            recipe = replace(
                recipe, documents=docs, calibration=_calibration(lab.get("calibration", {}), "calibration")
            )
        elif policy == "static":
            recipe = replace(recipe, replicas=_replicas(lab.get("replicas", {}), f"{lab_path}: replicas"))
        elif policy == "oracle":
            recipe = replace(recipe, foresight=_flag(lab, "foresight", lab_path))
            if "headroom" in lab:
                h = mapping(lab["headroom"], f"{lab_path}: headroom")
                strict(h, frozenset({"prefill", "decode"}), f"{lab_path}: headroom")
                recipe = replace(
                    recipe,
                    headroom=capacity.Headroom(
                        number(h, "prefill", "headroom", 0.75, positive=True),
                        number(h, "decode", "headroom", 0.85, True),
                    ),
                )
    except yaml.YAMLError as exc:
        raise RecipeError(f"{lab_path}: invalid YAML: {exc}") from None
    except (SpecError, ManifestError) as exc:
        message = str(exc)
        raise RecipeError(message if message.startswith(str(path)) else f"{lab_path}: {message}") from None
    return recipe
