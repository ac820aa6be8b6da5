"""Find and read the repository's KEDA ScaledObjects — the very files users apply.

The directory is, in order: the ``--manifests`` flag, ``$KEDA_OTEL_SCALER_MANIFESTS``, the
scenario's ``keda.manifests``, ``<repo>/manifests/keda`` next to this package, and
``./manifests/keda``. A directory with a ``kustomization.yaml`` is rendered the way
``kubectl apply -k`` would for what the repository uses (``resources``, ``components``
and JSON6902 ``patches``), so ``manifests/keda-push`` works too; otherwise every YAML
document of kind ScaledObject in the directory is read. There is deliberately no copy of
the files in the package: a missing directory is an error that says where to point.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml

import scaler

ENV_VAR = "KEDA_OTEL_SCALER_MANIFESTS"
DEFAULT_SUBDIR = Path("manifests") / "keda"
EXPECTED_FILES = ("scaledobject-prefill.yaml", "scaledobject-decode.yaml")


class ManifestError(ValueError):
    """The ScaledObjects are missing or malformed; the message says what to do."""


@dataclass(frozen=True)
class ScaledTrigger:
    """One ``spec.triggers[]`` entry of a ScaledObject (not the scaler's parsed trigger)."""

    index: int
    type: str
    """``external`` (polled) or ``external-push`` (KEDA also holds StreamIsActive open)."""
    name: str
    metric_type: Literal["AverageValue", "Value"]
    metadata: dict[str, str]


@dataclass(frozen=True)
class Fallback:
    failure_threshold: int
    replicas: int
    behavior: str = "static"


@dataclass(frozen=True)
class ScaledObject:
    name: str
    namespace: str
    target: str
    """``scaleTargetRef.name``: the Deployment."""
    min_replicas: int
    max_replicas: int
    polling_interval: float
    cooldown_period: float
    initial_cooldown_period: float
    idle_replica_count: int | None
    fallback: Fallback | None
    behavior: Mapping[str, Any] | None
    """``advanced.horizontalPodAutoscalerConfig.behavior`` as written (HPA defaults apply)."""
    triggers: tuple[ScaledTrigger, ...]
    source: str


def default_dir() -> Path | None:
    for base in (Path(scaler.__file__).resolve().parent.parent, Path.cwd()):
        candidate = base / DEFAULT_SUBDIR
        if candidate.is_dir():
            return candidate
    return None


def locate(flag: str | None, scenario_dir: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The manifests directory (see the module docstring for the order)."""
    for value, origin in ((flag, "--manifests"), (environ.get(ENV_VAR), ENV_VAR), (scenario_dir, "scenario")):
        if value:
            path = Path(value)
            if not path.is_dir():
                raise ManifestError(f"{origin}: {path} is not a directory with the ScaledObject manifests")
            return path
    found = default_dir()
    if found is None:
        expected = Path(scaler.__file__).resolve().parent.parent / DEFAULT_SUBDIR
        files = " and ".join(str(expected / f) for f in EXPECTED_FILES)
        raise ManifestError(
            f"ScaledObject manifests not found: expected {files} (the repository's manifests/keda). "
            f"Run from a checkout of keda-otel-scaler, or point the demo at the directory with "
            f"--manifests DIR, {ENV_VAR}=DIR, or 'keda: {{manifests: DIR}}' in the scenario."
        )
    return found


# ---------------------------------------------------------------------------- rendering


def _docs(path: Path) -> list[dict[str, Any]]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: {exc}") from None


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]], where: str) -> None:
    for op in ops:
        parts = _pointer(str(op["path"]))
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, op["value"])
            elif kind == "replace":
                parent[index] = op["value"]
            elif kind == "remove":
                del parent[index]
            elif kind == "test" and parent[index] != op["value"]:
                raise ManifestError(f"{where}: patch test failed at {op['path']}")
        elif kind in ("add", "replace"):
            parent[last] = op["value"]
        elif kind == "remove":
            del parent[last]
        elif kind == "test" and parent.get(last) != op["value"]:
            raise ManifestError(f"{where}: patch test failed at {op['path']}")


def _apply_patches(docs: list[dict[str, Any]], kustomization: Mapping[str, Any], where: str) -> None:
    for patch in kustomization.get("patches", []) or []:
        target = patch.get("target", {}) or {}
        ops = yaml.safe_load(patch["patch"]) if "patch" in patch else _docs(Path(where).parent / patch["path"])
        if not isinstance(ops, list):
            raise ManifestError(f"{where}: only JSON6902 (list) patches are supported by the demo")
        for doc in docs:
            if target.get("kind") not in (None, doc.get("kind")):
                continue
            if target.get("name") not in (None, doc.get("metadata", {}).get("name")):
                continue
            json_patch(doc, ops, where)


def render(directory: Path) -> list[dict[str, Any]]:
    """The documents ``kubectl apply -k`` (or ``-f DIR``) would apply, for our subset."""
    return [doc for doc, _ in render_sources(directory)]


def render_sources(directory: Path) -> list[tuple[dict[str, Any], str]]:
    """Like :func:`render`, each document with the file it came from (for error messages)."""
    kfile = directory / "kustomization.yaml"
    if not kfile.exists():
        return [(copy.deepcopy(d), str(f)) for f in sorted(directory.glob("*.y*ml")) for d in _docs(f)]
    k = _docs(kfile)[0]
    docs: list[tuple[dict[str, Any], str]] = []
    for entry in k.get("resources", []) or []:
        path = directory / entry
        if not path.exists():
            raise ManifestError(f"{kfile}: resources: {entry!r} does not exist")
        docs.extend(render_sources(path) if path.is_dir() else [(d, str(path)) for d in _docs(path)])
    plain = [d for d, _ in docs]
    _apply_patches(plain, k, str(kfile))
    for entry in k.get("components", []) or []:
        component = _docs(directory / entry / "kustomization.yaml")[0]
        _apply_patches(plain, component, str(directory / entry / "kustomization.yaml"))
    return docs


# ---------------------------------------------------------------------------- parsing


# The keys of KEDA's ScaledObject CRD (keda.sh/v1alpha1); anything else is a typo that KEDA's
# API server would reject (strict field validation), so the demo and the lab reject it too.
SPEC_KEYS = frozenset(
    {
        "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
        "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
    }
)  # fmt: skip
TRIGGER_KEYS = frozenset({"type", "name", "metadata", "metricType", "authenticationRef", "useCachedMetrics"})
ADVANCED_KEYS = frozenset({"restoreToOriginalReplicaCount", "horizontalPodAutoscalerConfig", "scalingModifiers"})
FALLBACK_KEYS = frozenset({"failureThreshold", "replicas", "behavior"})


def _strict(data: Any, allowed: frozenset[str], where: str) -> Mapping[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ManifestError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise ManifestError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    return data


def _int(spec: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ManifestError(f"{where}: spec.{key} must be a non-negative integer, got {value!r}")
    return value


def _trigger(raw: Any, i: int, where: str) -> ScaledTrigger:
    data = _strict(raw, TRIGGER_KEYS, f"{where}: spec.triggers[{i}]")
    kind = data.get("type")
    if kind not in ("external", "external-push"):
        raise ManifestError(f"{where}: triggers[{i}].type {kind!r}: the demo drives external/external-push only")
    metric_type = data.get("metricType", "AverageValue")
    if metric_type not in ("AverageValue", "Value"):
        raise ManifestError(f"{where}: triggers[{i}].metricType {metric_type!r} is not AverageValue or Value")
    raw_metadata = data.get("metadata")
    if not isinstance(raw_metadata, Mapping):
        raise ManifestError(f"{where}: spec.triggers[{i}].metadata must be a mapping of strings")
    metadata = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in raw_metadata.items()}
    return ScaledTrigger(i, kind, str(data.get("name", f"trigger-{i}")), metric_type, metadata)


def parse(doc: Mapping[str, Any], where: str) -> ScaledObject:
    meta = doc.get("metadata", {}) or {}
    spec = _strict(doc.get("spec", {}), SPEC_KEYS, f"{where}: spec")
    target = (spec.get("scaleTargetRef") or {}).get("name")
    if not target:
        raise ManifestError(f"{where}: spec.scaleTargetRef.name is required")
    triggers = [_trigger(raw, i, where) for i, raw in enumerate(spec.get("triggers") or [])]
    if not triggers:
        raise ManifestError(f"{where}: spec.triggers is empty")
    fallback = None
    if spec.get("fallback"):
        fb = _strict(spec["fallback"], FALLBACK_KEYS, f"{where}: spec.fallback")
        try:
            fallback = Fallback(int(fb["failureThreshold"]), int(fb["replicas"]), str(fb.get("behavior", "static")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: spec.fallback needs integer failureThreshold and replicas ({exc})") from None
    advanced = _strict(spec.get("advanced"), ADVANCED_KEYS, f"{where}: spec.advanced")
    idle = spec.get("idleReplicaCount")
    return ScaledObject(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        target=str(target),
        min_replicas=_int(spec, "minReplicaCount", 0, where),
        max_replicas=_int(spec, "maxReplicaCount", 100, where),
        polling_interval=float(_int(spec, "pollingInterval", 30, where)),
        cooldown_period=float(_int(spec, "cooldownPeriod", 300, where)),
        initial_cooldown_period=float(_int(spec, "initialCooldownPeriod", 0, where)),
        idle_replica_count=None if idle is None else _int(spec, "idleReplicaCount", 0, where),
        fallback=fallback,
        behavior=(advanced.get("horizontalPodAutoscalerConfig") or {}).get("behavior"),
        triggers=tuple(triggers),
        source=where,
    )


def load(directory: Path, deployments: tuple[str, ...], namespace: str) -> list[ScaledObject]:
    """The ScaledObjects in ``directory`` that target ``deployments`` (one each, required)."""
    objects = [parse(d, str(directory)) for d in render(directory) if d.get("kind") == "ScaledObject"]
    found = []
    for name in deployments:
        matches = [o for o in objects if o.target == name]
        if not matches:
            raise ManifestError(
                f"{directory}: no ScaledObject targets Deployment {name!r} "
                f"(expected {', '.join(str(directory / f) for f in EXPECTED_FILES)})"
            )
        if len(matches) > 1:
            raise ManifestError(f"{directory}: {len(matches)} ScaledObjects target Deployment {name!r}")
        obj = matches[0]
        found.append(obj if obj.namespace else replace(obj, namespace=namespace))
    return found
