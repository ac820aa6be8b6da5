"""Render ``charts/keda-otel-scaler`` in-process with Helm's own engine, as ``helm template`` would.

``helm-python-sdk`` (PyPI) binds Helm v4's Go SDK (``libhelm_c``, shipped inside the wheel)
through ctypes: the real template engine, Sprig functions and ``values.schema.json``
validation, with no ``helm`` binary, no cluster and no network.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python
import yaml

from scaler import config
from tests.manifests import k8svalidate

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "keda-otel-scaler"
EXAMPLES = CHART / "examples"
RELEASE = "keda-otel-scaler"
NAMESPACE = "keda"

Doc = dict[str, Any]


def declared_settings() -> dict[str, str]:
    """Environment variable -> Settings attribute, for every setting of ``serve``."""
    return {s.env: s.name for s in config.SETTINGS}


def load_settings(environ: Mapping[str, str]) -> config.Settings:
    """The server's own settings loader, on an environment as the container gets it."""
    return config.load({}, environ)


def camel(env: str) -> str:
    """The chart's value name of a setting: METRIC_STORE_RETENTION_SECONDS -> metricStoreRetentionSeconds."""
    first, *rest = env.lower().split("_")
    return first + "".join(part.capitalize() for part in rest)


def merge(base: Any, override: Any) -> Any:
    """Combine values as ``helm -f a -f b`` does: maps merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def example(name: str) -> Doc:
    values: Doc = yaml.safe_load((EXAMPLES / name).read_text())
    return values


@functools.cache
def _chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def render_text(values: Doc | None = None, release: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (Helm validates the values against the schema first)."""
    return _chart().render(values or {}, name=release, namespace=namespace, is_install=True)


def render(values: Doc | None = None, release: str = RELEASE, namespace: str = NAMESPACE) -> list[Doc]:
    """Every rendered Kubernetes object, parsed as the API server would (duplicate keys fail)."""
    docs: list[Doc] = []
    for path, text in sorted(render_text(values, release, namespace).items()):
        if not path.endswith("NOTES.txt"):
            docs.extend(k8svalidate.load_documents(text))
    return docs


def notes(values: Doc | None = None, release: str = RELEASE, namespace: str = NAMESPACE) -> str:
    return next(text for path, text in render_text(values, release, namespace).items() if path.endswith("NOTES.txt"))


def lint(values: Doc | None = None) -> dict[str, Any]:
    return helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE)


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(docs: list[Doc]) -> Doc:
    (scaler,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    result: Doc = scaler
    return result


def env(docs: list[Doc]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(docs)["env"] if "value" in e}
