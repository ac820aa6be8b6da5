"""The Helm chart: lint, schema, every setting as a value, strict validation of what it renders,
and equivalence with the kustomize manifests where the two overlap.

Rendering is Helm's own engine in-process (``tests/chart/helm.py``); validation is the same
strict, vendored validator as ``manifests/`` (``tests/manifests/k8svalidate.py``).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import helm_python
import pytest
import yaml

from tests.chart import helm
from tests.chart.helm import Doc, one
from tests.manifests import k8svalidate
from tests.manifests.test_manifests import UNSCHEMED_GROUPS, assert_valid
from tests.manifests.test_manifests import render as kustomize

EXAMPLE_FILES = sorted(p.name for p in helm.EXAMPLES.glob("*.yaml"))
# cert-manager and prometheus-operator kinds have no vendored schema (schemas/README.md).
ALLOWED_SKIPS = (*UNSCHEMED_GROUPS, "monitoring.coreos.com/")
SCHEMA = json.loads((helm.CHART / "values.schema.json").read_text())


# ------------------------------------------------------------------ lint and schema


def test_examples_exist() -> None:
    assert set(EXAMPLE_FILES) >= {"values-tls.yaml", "values-push.yaml", "values-production.yaml"}


@pytest.mark.parametrize("values_file", [None, *EXAMPLE_FILES])
def test_chart_lints_clean(values_file: str | None) -> None:
    report = helm.lint(helm.example(values_file) if values_file else None)
    assert report["errors"] == [], report
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


@pytest.mark.parametrize("values_file", [None, *EXAMPLE_FILES])
def test_rendered_objects_validate_strictly(values_file: str | None) -> None:
    values = helm.example(values_file) if values_file else None
    docs = helm.render(values)
    assert docs
    results = [k8svalidate.validate(doc) for doc in docs]
    assert_valid(results, docs, ALLOWED_SKIPS)
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "duplicate objects"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"settings": {"maxSerie": 1}}, "additional properties 'maxSerie' not allowed"),
        ({"settings": {"maxSeries": "many"}}, "/settings/maxSeries"),
        ({"settings": {"maxSeries": 0}}, "/settings/maxSeries"),
        ({"settings": {"logFormat": "xml"}}, "/settings/logFormat"),
        ({"settings": {"restApiPort": 0}}, "/settings/restApiPort"),
        ({"replicas": 2}, "/replicas"),
        ({"tls": {"issuerRef": {"kind": "ClusterIssuer"}}}, "/tls/issuerRef"),
        (
            {"roles": {"decode": {"scaledObject": {"triggers": [{"name": "t", "metadata": {"targetValue": "1"}}]}}}},
            "/roles/decode",
        ),
        (
            {
                "roles": {
                    "decode": {
                        "scaledObject": {"triggers": [{"name": "t", "metadata": {"query": "x", "targetValue": 2}}]}
                    }
                }
            },
            "targetValue",
        ),
        (
            {
                "roles": {
                    "decode": {
                        "scaledObject": {
                            "triggers": [
                                {"name": "t", "metadata": {"query": "x", "targetValue": "1", "scalerAddress": "a:1"}}
                            ]
                        }
                    }
                }
            },
            "/roles/decode",
        ),
    ],
)
def test_invalid_values_are_refused_naming_the_value(values: Doc, message: str) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        helm.render(values)
    assert message in str(caught.value), str(caught.value)


def test_a_tls_file_set_twice_is_refused() -> None:
    with pytest.raises(helm_python.HelmError, match=r"KEDA_TLS_CA_FILE is set by tls\.enabled"):
        helm.render({"tls": {"enabled": True}, "settings": {"kedaTlsCaFile": "/x/ca.crt"}})
    with pytest.raises(helm_python.HelmError, match="adminToken and adminTokenSecret are exclusive"):
        helm.render({"adminTokenSecret": "s", "settings": {"adminToken": "t"}})


# ------------------------------------------------------------ every setting is a value


def test_every_setting_of_serve_is_a_chart_value() -> None:
    declared = {helm.camel(env) for env in helm.declared_settings()}
    in_schema = set(SCHEMA["properties"]["settings"]["properties"])
    in_values = set(yaml.safe_load((helm.CHART / "values.yaml").read_text())["settings"])
    assert in_schema == declared, {"missing": declared - in_schema, "unknown": in_schema - declared}
    assert in_values == declared, {"missing": declared - in_values, "unknown": in_values - declared}
    assert SCHEMA["properties"]["settings"]["additionalProperties"] is False


def _sample(key: str, schema: Doc, index: int) -> Any:
    """A valid, non-default value for a setting, from its schema type."""
    types = set(schema["type"]) - {"null"}
    if "enum" in schema:
        return [v for v in schema["enum"] if v is not None][-1]
    if types == {"boolean"}:
        return True
    if types == {"integer"}:
        # >= 1e6 exercises the chart's float64 -> integer formatting (Helm reads numbers as floats).
        return min(schema.get("maximum", 10**9), 1_000_003 + index)
    if types == {"number"}:
        return 0.5 + index
    if key == "resourceLabels":
        return "k8s.pod.name=pod,service.name=job"
    if key == "peers":
        return "dns+http://peers.example:9090"
    if key.endswith("Address"):
        return "127.0.0.1"
    return f"/etc/scaler/{key}"


def test_every_setting_renders_to_the_variable_the_server_reads() -> None:
    # A differential check through the server's own loader: set every setting to a
    # non-default value, render, and load the container's environment as the process would.
    properties: dict[str, Doc] = SCHEMA["properties"]["settings"]["properties"]
    values = {key: _sample(key, schema, i) for i, (key, schema) in enumerate(sorted(properties.items()))}
    docs = helm.render({"settings": values})
    rendered = helm.env(docs)
    declared = helm.declared_settings()
    assert set(rendered) == set(declared)
    loaded = helm.load_settings(rendered)
    for env, attribute in declared.items():
        expected = values[helm.camel(env)]
        assert loaded.value(attribute) == expected, (env, rendered[env])
    ports = {p["name"]: p["containerPort"] for p in helm.container(docs)["ports"]}
    listeners = loaded.listeners
    assert ports == {
        "otlp-grpc": listeners.otlp_receiver_port,
        "keda": listeners.keda_external_scaler_port,
        "http": 65535,
    }


def test_default_settings_load_and_unset_ones_keep_the_servers_defaults() -> None:
    rendered = helm.env(helm.render())
    values = yaml.safe_load((helm.CHART / "values.yaml").read_text())["settings"]
    declared = helm.declared_settings()
    assert set(rendered) == {env for env in declared if values[helm.camel(env)] is not None}
    helm.load_settings(rendered)


# ----------------------------------------------- equivalence with the kustomize manifests

EQUIVALENT = {
    # example values files -> the kustomize directories that deploy the same thing
    "default": ((), ("scaler", "collectors", "keda")),
    "push": (("values-push.yaml",), ("scaler", "collectors", "keda-push")),
    "tls": (("values-tls.yaml",), ("scaler-tls", "collectors-tls", "keda-tls")),
    "tls-push": (("values-tls.yaml", "values-push.yaml"), ("scaler-tls", "collectors-tls", "keda-push-tls")),
}


def _pair(case: str) -> tuple[list[Doc], list[Doc]]:
    files, dirs = EQUIVALENT[case]
    values: Doc = {}
    for name in files:
        values = helm.merge(values, helm.example(name))
    return helm.render(values), [doc for d in dirs for doc in kustomize(d)]


def _by_name(spec: Doc, *fields: str) -> Doc:
    """``spec`` with its named lists (volumes, mounts, env) as maps: their order means nothing."""
    return {k: ({item["name"]: item for item in v} if k in fields else v) for k, v in spec.items()}


def _key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


@pytest.mark.parametrize("case", sorted(EQUIVALENT))
def test_the_chart_deploys_the_same_objects_as_kustomize(case: str) -> None:
    chart, kust = _pair(case)
    assert sorted(map(_key, chart)) == sorted(map(_key, kust))


@pytest.mark.parametrize("case", sorted(EQUIVALENT))
def test_scaler_pod_is_equivalent(case: str) -> None:
    chart, kust = _pair(case)
    c_container, k_container = helm.container(chart), helm.container(kust)
    c_deploy, k_deploy = one(chart, "Deployment"), one(kust, "Deployment")
    for field in ("replicas", "revisionHistoryLimit", "strategy"):
        assert c_deploy["spec"][field] == k_deploy["spec"][field], field
    c_pod, k_pod = c_deploy["spec"]["template"]["spec"], k_deploy["spec"]["template"]["spec"]
    c_pod.pop("containers")
    k_pod.pop("containers")
    assert _by_name(c_pod, "volumes") == _by_name(k_pod, "volumes")
    assert _by_name(c_container, "env", "volumeMounts") == _by_name(k_container, "env", "volumeMounts")
    assert (
        c_deploy["spec"]["selector"]["matchLabels"].items()
        <= c_deploy["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize("case", sorted(EQUIVALENT))
def test_service_policy_budget_and_account_are_equivalent(case: str) -> None:
    chart, kust = _pair(case)
    pod_labels = one(chart, "Deployment")["spec"]["template"]["metadata"]["labels"]
    c_svc, k_svc = one(chart, "Service")["spec"], one(kust, "Service")["spec"]
    assert c_svc["ports"] == k_svc["ports"] and c_svc["type"] == k_svc["type"]
    assert c_svc["selector"].items() <= pod_labels.items()
    c_np, k_np = one(chart, "NetworkPolicy")["spec"], one(kust, "NetworkPolicy")["spec"]
    assert c_np["ingress"] == k_np["ingress"] and c_np["policyTypes"] == k_np["policyTypes"]
    assert c_np["podSelector"]["matchLabels"].items() <= pod_labels.items()
    c_pdb, k_pdb = one(chart, "PodDisruptionBudget")["spec"], one(kust, "PodDisruptionBudget")["spec"]
    assert {k: v for k, v in c_pdb.items() if k != "selector"} == {k: v for k, v in k_pdb.items() if k != "selector"}
    assert c_pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    c_sa, k_sa = one(chart, "ServiceAccount"), one(kust, "ServiceAccount")
    assert c_sa["automountServiceAccountToken"] == k_sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("case", sorted(EQUIVALENT))
def test_collectors_and_scaled_objects_are_equivalent(case: str) -> None:
    chart, kust = _pair(case)
    for kind in ("OpenTelemetryCollector", "ScaledObject"):
        k_docs = [d for d in kust if d["kind"] == kind]
        assert len(k_docs) == 2
        for k_doc in k_docs:
            c_doc = one(chart, kind, k_doc["metadata"]["name"])
            assert c_doc["spec"] == k_doc["spec"], k_doc["metadata"]["name"]
            assert k_doc["metadata"]["labels"].items() <= c_doc["metadata"]["labels"].items()


@pytest.mark.parametrize("case", ["tls", "tls-push"])
def test_tls_objects_are_equivalent(case: str) -> None:
    chart, kust = _pair(case)
    for kind in ("Certificate", "Issuer", "ClusterTriggerAuthentication"):
        k_docs = [d for d in kust if d["kind"] == kind]
        assert k_docs, kind
        for k_doc in k_docs:
            assert one(chart, kind, k_doc["metadata"]["name"])["spec"] == k_doc["spec"], _key(k_doc)


# -------------------------------------------------------------- what the values change


def test_another_release_and_namespaces_stay_wired_together() -> None:
    # Release "scaler" in namespace "autoscaling", model in "llm-d": every cross-reference
    # (scalerAddress, exporter endpoint, certificate names) follows.
    docs = helm.render(
        {"model": {"namespace": "llm-d"}, "tls": {"enabled": True}}, release="scaler", namespace="autoscaling"
    )
    host = "scaler-keda-otel-scaler.autoscaling.svc"
    svc = one(docs, "Service", "scaler-keda-otel-scaler")
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    for doc in docs:
        expected_ns = "llm-d" if doc["kind"] in ("ScaledObject", "OpenTelemetryCollector") else "autoscaling"
        if doc["kind"] != "ClusterTriggerAuthentication":
            assert doc["metadata"]["namespace"] == expected_ns, _key(doc)
    for so in (d for d in docs if d["kind"] == "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            assert trigger["metadata"]["scalerAddress"] == f"{host}:{ports['keda']}"
            assert trigger["authenticationRef"]["name"] == one(docs, "ClusterTriggerAuthentication")["metadata"]["name"]
    for col in (d for d in docs if d["kind"] == "OpenTelemetryCollector"):
        exporter = col["spec"]["config"]["exporters"]["otlp/keda-otel-scaler"]
        assert exporter["endpoint"] == f"{host}:{ports['otlp-grpc']}"
    server = one(docs, "Certificate", "scaler-keda-otel-scaler-server")["spec"]
    assert host in server["dnsNames"]
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": server["secretName"], "defaultMode": 288}} in volumes


def test_a_persistent_snapshot_uses_the_claim_and_recreate() -> None:
    docs = helm.render(helm.example("values-production.yaml"))
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"] == {"claimName": "keda-otel-scaler-state"}
    mounts = {m["name"]: m["mountPath"] for m in helm.container(docs)["volumeMounts"]}
    assert mounts["state"] == str(PurePosixPath(helm.env(docs)["SNAPSHOT_PATH"]).parent)
    token = next(e for e in helm.container(docs)["env"] if e["name"] == "ADMIN_TOKEN")
    assert token["valueFrom"] == {"secretKeyRef": {"name": "keda-otel-scaler-admin", "key": "token"}}
    prefill = one(docs, "ScaledObject", "pd-prefill")
    assert prefill["spec"]["maxReplicaCount"] == 8
    assert helm.env(docs)["MAX_OTLP_MESSAGE_BYTES"] == "33554432"


def test_no_snapshot_path_means_no_state_volume() -> None:
    docs = helm.render({"settings": {"snapshotPath": None, "snapshotIntervalSeconds": None}})
    assert "SNAPSHOT_PATH" not in helm.env(docs)
    volumes = {v["name"] for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes == {"tmp"}


def test_service_monitor_scrapes_the_services_http_port() -> None:
    for values in (
        helm.example("values-production.yaml"),
        helm.merge(helm.example("values-production.yaml"), {"tls": {"enabled": True}}),
    ):
        docs = helm.render(values)
        monitor = one(docs, "ServiceMonitor")["spec"]
        svc = one(docs, "Service")
        assert monitor["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert monitor["namespaceSelector"] == {"matchNames": [svc["metadata"]["namespace"]]}
        (endpoint,) = monitor["endpoints"]
        assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        if values.get("tls", {}).get("enabled"):
            assert endpoint["scheme"] == "https"
            assert (
                endpoint["tlsConfig"]["ca"]["secret"]["name"]
                == one(docs, "Certificate", "keda-otel-scaler-server")["spec"]["secretName"]
            )


def test_scaler_only_with_an_existing_issuer() -> None:
    docs = helm.render(helm.example("values-scaler-only.yaml"))
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"OpenTelemetryCollector", "ScaledObject", "Issuer", "ClusterTriggerAuthentication"}
    for cert in (d for d in docs if d["kind"] == "Certificate"):
        assert cert["spec"]["issuerRef"] == {
            "name": "corporate-ca",
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }
    assert helm.env(docs)["LOG_LEVEL"] == "debug"


def test_a_role_can_be_switched_off_or_added() -> None:
    extra = helm.merge(
        helm.example("values-push.yaml"),
        {
            "roles": {
                "prefill": None,
                "aggregated": {
                    "deployment": "plain-vllm",
                    "metricsPort": 8000,
                    "collector": {"enabled": True, "name": "vllm-plain-collector"},
                    "scaledObject": {
                        "enabled": True,
                        "name": "plain",
                        "triggers": [
                            {
                                "name": "waiting",
                                "metadata": {"query": "sum(vllm:num_requests_waiting)", "targetValue": "4"},
                            }
                        ],
                    },
                },
            }
        },
    )
    docs = helm.render(extra)
    assert sorted(d["metadata"]["name"] for d in docs if d["kind"] == "ScaledObject") == ["pd-decode", "plain"]
    plain = one(docs, "ScaledObject", "plain")["spec"]
    assert plain["scaleTargetRef"]["name"] == "plain-vllm"
    assert plain["triggers"][0]["type"] == "external-push"
    assert plain["triggers"][0]["metricType"] == "AverageValue"
    assert k8svalidate.validate(one(docs, "OpenTelemetryCollector", "vllm-plain-collector")).status == "OK"


def test_notes_name_the_endpoints_and_the_ca_copy() -> None:
    text = helm.notes(helm.example("values-tls.yaml"))
    assert "keda-otel-scaler.keda.svc:4318" in text
    assert "create secret generic keda-otel-scaler-ca-cert" in text
