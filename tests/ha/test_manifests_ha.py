"""The HA layout as shipped: kustomize (``scaler-ha``, ``collectors-ha``, their TLS variants and
``ha-overlay.sh N``) and the chart's ``highAvailability`` values. Rendered offline and checked
against the contracts a schema cannot see: the StatefulSet runs exactly the single-replica pod
(plus the HA settings), each collector exporter is the single-replica exporter aimed at one
replica's stable name, and the names line up with the headless Service and PEERS."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from scaler import config
from tests.chart import helm
from tests.manifests import k8svalidate
from tests.manifests.test_manifests import (
    MANIFESTS,
    UNSCHEMED_GROUPS,
    _fake_tools,
    assert_valid,
    by_kind,
    one,
    render,
    setup_dry_run,
)

Doc = dict[str, Any]
NAMESPACE = "keda"


def _pod(workload: Doc) -> Doc:
    pod: Doc = workload["spec"]["template"]["spec"]
    return pod


def _without_ha(pod: Doc) -> Doc:
    """The pod spec less what the HA layout adds (anti-affinity, zone spread, PEER* variables)."""
    out = copy.deepcopy(pod)
    out.pop("affinity", None)
    out.pop("topologySpreadConstraints", None)
    for container in out["containers"]:
        container["env"] = [e for e in container["env"] if not e["name"].startswith("PEER")]
    return out


def _env(workload: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _pod(workload)["containers"][0]["env"]}


def _check_layout(docs: list[Doc], single: list[Doc], replicas: int, scheme: str) -> None:
    assert not by_kind(docs, "Deployment")
    sts = one(docs, "StatefulSet", "keda-otel-scaler")
    deployment = one(single, "Deployment", "keda-otel-scaler")
    assert sts["spec"]["replicas"] == replicas
    assert _without_ha(_pod(sts)) == _pod(deployment)  # the same pod as the single replica
    assert sts["spec"]["template"]["metadata"] == deployment["spec"]["template"]["metadata"]
    assert sts["spec"]["selector"] == deployment["spec"]["selector"]
    headless = one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for selector in (headless["spec"]["selector"], one(docs, "Service", "keda-otel-scaler")["spec"]["selector"]):
        assert selector.items() <= labels.items()
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    anti = _pod(sts)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert anti[0]["labelSelector"]["matchLabels"].items() <= labels.items()
    env = _env(sts)
    sources = config.parse_peers(env["PEERS"])
    assert [(s.scheme, s.resolve, s.port) for s in sources] == [(scheme, True, 9090)]
    assert sources[0].host.split(".")[0] == headless["metadata"]["name"]
    assert env["PEER_TOKEN"]["secretKeyRef"]["key"] == "token"


def _exporters(collector: Doc) -> dict[str, Doc]:
    exporters: dict[str, Doc] = collector["spec"]["config"]["exporters"]
    assert collector["spec"]["config"]["service"]["pipelines"]["metrics"]["exporters"] == list(exporters)
    return exporters


def _check_fan_out(collectors: list[Doc], single: list[Doc], replicas: int) -> None:
    assert len(collectors) == 2
    for collector in collectors:
        name = collector["metadata"]["name"]
        (original,) = _exporters(one(single, "OpenTelemetryCollector", name)).values()
        exporters = _exporters(collector)
        assert list(exporters) == [f"otlp/keda-otel-scaler-{i}" for i in range(replicas)]
        for i, exporter in enumerate(exporters.values()):
            assert exporter["endpoint"] == f"keda-otel-scaler-{i}.keda-otel-scaler-headless.{NAMESPACE}.svc:4317"
            assert {**exporter, "endpoint": original["endpoint"]} == original  # own retry and queue each
            assert exporter["sending_queue"]["enabled"] and exporter["retry_on_failure"]["enabled"]


def test_scaler_ha_is_the_single_replica_pod_as_a_statefulset() -> None:
    _check_layout(render("scaler-ha"), render("scaler"), 3, "http")


def test_scaler_ha_tls_keeps_the_tls_wiring_and_names_every_replica() -> None:
    docs = render("scaler-ha-tls")
    _check_layout(docs, render("scaler-tls"), 3, "https")
    sts = one(docs, "StatefulSet")
    assert _env(sts)["PEER_CA_FILE"] == "/etc/keda-otel-scaler/tls/ca.crt"
    server = one(docs, "Certificate", "keda-otel-scaler-server")["spec"]["dnsNames"]
    assert f"*.keda-otel-scaler-headless.{NAMESPACE}.svc" in server
    assert config.parse_peers(_env(sts)["PEERS"])[0].host in server  # what the peer fetch verifies


@pytest.mark.parametrize(("ha", "single"), [("collectors-ha", "collectors"), ("collectors-ha-tls", "collectors-tls")])
def test_collectors_export_to_every_replica(ha: str, single: str) -> None:
    _check_fan_out(by_kind(render(ha), "OpenTelemetryCollector"), render(single), 3)


def _kustomize(directory: Path) -> str:
    return subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=True
    ).stdout


@pytest.mark.parametrize(("replicas", "tls"), [(1, False), (5, False), (2, True)])
def test_ha_overlay_writes_any_replica_count(tmp_path: Path, replicas: int, tls: bool) -> None:
    script = MANIFESTS / "ha-overlay.sh"
    args = [str(script), *(["--tls"] if tls else []), str(replicas), str(tmp_path / "out")]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    suffix = "-tls" if tls else ""
    for part in ("scaler", "collectors"):
        text = _kustomize(tmp_path / "out" / part)
        docs = [d for d in yaml.safe_load_all(text) if d]
        assert_valid(k8svalidate.validate_text(text), docs, UNSCHEMED_GROUPS)
        if part == "scaler":
            _check_layout(docs, render(f"scaler{suffix}"), replicas, "https" if tls else "http")
        else:
            _check_fan_out(docs, render(f"collectors{suffix}"), replicas)


def test_ha_overlay_refuses_a_bad_count(tmp_path: Path) -> None:
    script = MANIFESTS / "ha-overlay.sh"
    for bad in ("0", "three", "100"):
        proc = subprocess.run([str(script), bad, str(tmp_path)], capture_output=True, text=True, check=False)
        assert proc.returncode == 2 and "N must be a whole number" in proc.stderr
    assert not (tmp_path / "scaler").exists()


# --------------------------------------------------------------------------- the chart


def _chart(values: Doc) -> list[Doc]:
    docs = helm.render(values)
    results = [k8svalidate.validate(doc) for doc in docs]
    assert_valid(results, docs, (*UNSCHEMED_GROUPS, "monitoring.coreos.com/"))
    return docs


@pytest.mark.parametrize("replicas", [2, 3, 7])
def test_chart_ha_for_any_replica_count(replicas: int) -> None:
    docs = _chart({"highAvailability": {"enabled": True, "replicas": replicas}})
    single = _chart({})
    assert not by_kind(docs, "Deployment")
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == replicas
    assert _without_ha(_pod(sts)) == _pod(one(single, "Deployment"))
    headless = one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["publishNotReadyAddresses"] is True
    env = _env(sts)
    assert env["PEERS"] == f"dns+http://{headless['metadata']['name']}.{NAMESPACE}.svc:9090"
    secret = one(docs, "Secret", env["PEER_TOKEN"]["secretKeyRef"]["name"])
    assert secret["data"]["token"]
    for collector in by_kind(docs, "OpenTelemetryCollector"):
        exporters = _exporters(collector)
        assert len(exporters) == replicas
        for i, exporter in enumerate(exporters.values()):
            host = f"{sts['metadata']['name']}-{i}.{headless['metadata']['name']}.{NAMESPACE}.svc"
            assert exporter["endpoint"] == f"{host}:4317"


def test_chart_ha_with_tls_and_an_existing_token() -> None:
    docs = _chart({"highAvailability": {"enabled": True, "peerTokenSecret": "mine"}, "tls": {"enabled": True}})
    assert not by_kind(docs, "Secret") or all(s["metadata"]["name"] != "mine" for s in by_kind(docs, "Secret"))
    env = _env(one(docs, "StatefulSet"))
    assert env["PEER_TOKEN"]["secretKeyRef"]["name"] == "mine"
    assert env["PEERS"].startswith("dns+https://") and env["PEER_CA_FILE"].endswith("/ca.crt")
    server = next(c for c in by_kind(docs, "Certificate") if "dnsNames" in c["spec"])
    assert f"*.keda-otel-scaler-headless.{NAMESPACE}.svc" in server["spec"]["dnsNames"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"settings": {"peers": "http://x:9090"}}, "PEERS is set by highAvailability.enabled"),
        ({"settings": {"peerToken": "t"}}, "PEER_TOKEN is set by highAvailability.enabled"),
        ({"snapshot": {"existingClaim": "c"}}, "snapshot.existingClaim"),
    ],
)
def test_chart_ha_refuses_conflicting_values(values: Doc, message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        helm.render({"highAvailability": {"enabled": True}, **values})


def test_chart_refuses_a_malformed_peers_value() -> None:
    with pytest.raises(helm_python.HelmError, match="/settings/peers"):
        helm.render({"settings": {"peers": "peer:9090"}})


def test_setup_ha_dry_run_applies_the_generated_overlays_and_runs_nothing(tmp_path: Path) -> None:
    out = setup_dry_run(tmp_path, "--namespace", "llm-d", "--ha", "4", "--tls")
    expected = [
        "ha-overlay.sh --tls 4 ",
        "+ kubectl -n keda create secret generic keda-otel-scaler-peer-token --from-literal=token=RANDOM",
        "/scaler\n",
        "+ kubectl -n keda rollout status statefulset/keda-otel-scaler",
        "+ kubectl -n keda delete deployment keda-otel-scaler --ignore-not-found",
        "create secret generic keda-otel-scaler-ca-cert -n llm-d",
        "/collectors\n",
        "keda-tls\n",
    ]
    position = 0
    for needle in expected:
        found = out.find(needle, position)
        assert found >= 0, f"{needle!r} missing or out of order in:\n{out}"
        position = found + len(needle)
    env, _ = _fake_tools(tmp_path / "bad", {"kubectl": "exit 97", "helm": "exit 97"})
    bad = subprocess.run(
        [str(MANIFESTS / "setup.sh"), "--dry-run", "--ha", "0"], capture_output=True, text=True, env=env, check=False
    )
    assert bad.returncode != 0 and "--ha needs a replica count" in bad.stderr
