"""The demo reads the repository's ScaledObjects (and renders the kustomize variants it can)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.sim import manifests
from scaler.sim.hpa import parse_behavior

REPO = Path(__file__).resolve().parents[2]
KEDA = REPO / "manifests" / "keda"
DEPLOYMENTS = ("pd-llm-d-modelservice-prefill", "pd-llm-d-modelservice-decode")

needs_manifests = pytest.mark.skipif(not KEDA.is_dir(), reason="manifests/keda is not in this checkout")


@needs_manifests
def test_the_repository_scaledobjects_are_read() -> None:
    prefill, decode = manifests.load(KEDA, DEPLOYMENTS, "llm-d")
    assert (prefill.name, decode.name) == ("pd-prefill", "pd-decode")
    assert prefill.namespace == "llm-d"  # the files leave it to `kubectl -n`
    for so in (prefill, decode):
        assert so.min_replicas >= 0 and so.max_replicas >= max(so.min_replicas, 1)
        assert all(t.type == "external" and "targetValue" in t.metadata for t in so.triggers)
        assert all(t.metadata["scalerAddress"] == "keda-otel-scaler.keda.svc:4318" for t in so.triggers)
        parse_behavior(so.behavior)  # valid HPA behavior
    assert any("prefill" in t.metadata.get("query", "") for t in prefill.triggers)


@needs_manifests
def test_the_push_variant_is_rendered_with_its_patches() -> None:
    objects = manifests.load(REPO / "manifests" / "keda-push", DEPLOYMENTS, "llm-d")
    assert all(t.type == "external-push" for so in objects for t in so.triggers)


def test_plain_directories_and_strict_parsing(tmp_path: Path) -> None:
    (tmp_path / "so.yaml").write_text(
        """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: p, namespace: ns}
spec:
  scaleTargetRef: {name: pre}
  fallback: {failureThreshold: 2, replicas: 3}
  triggers:
    - type: external
      metricType: Value
      metadata: {query: "vector(1)", targetValue: 2, errIfNotFound: true}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: d}
spec:
  scaleTargetRef: {name: dec}
  triggers: [{type: external, metadata: {query: "vector(1)", targetValue: "1"}}]
"""
    )
    pre, dec = manifests.load(tmp_path, ("pre", "dec"), "default-ns")
    assert (pre.namespace, dec.namespace) == ("ns", "default-ns")
    assert (pre.min_replicas, pre.max_replicas, pre.polling_interval, pre.cooldown_period) == (0, 100, 30, 300)
    assert pre.fallback == manifests.Fallback(2, 3, "static")
    assert pre.triggers[0].metric_type == "Value"
    assert pre.triggers[0].metadata == {"query": "vector(1)", "targetValue": "2", "errIfNotFound": "true"}
    with pytest.raises(manifests.ManifestError, match="no ScaledObject targets Deployment 'other'"):
        manifests.load(tmp_path, ("pre", "other"), "ns")
    (tmp_path / "bad.yaml").write_text(
        "kind: ScaledObject\nspec: {scaleTargetRef: {name: x}, triggers: [{type: cpu, metadata: {}}]}\n"
    )
    with pytest.raises(manifests.ManifestError, match=r"triggers\[0\]\.type 'cpu'"):
        manifests.load(tmp_path, ("pre",), "ns")


def test_locate_order_and_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    assert manifests.locate(str(a), str(c), {manifests.ENV_VAR: str(b)}) == a
    assert manifests.locate(None, str(c), {manifests.ENV_VAR: str(b)}) == b
    assert manifests.locate(None, str(c), {}) == c
    with pytest.raises(manifests.ManifestError, match=r"--manifests: .* is not a directory"):
        manifests.locate(str(tmp_path / "missing"), None, {})
    monkeypatch.setattr(manifests, "default_dir", lambda: None)
    with pytest.raises(manifests.ManifestError) as err:
        manifests.locate(None, None, {})
    message = str(err.value)
    assert "scaledobject-prefill.yaml" in message and "--manifests DIR" in message and manifests.ENV_VAR in message
