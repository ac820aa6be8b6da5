"""Offline checks of the Kubernetes manifests, Helm values and scripts in manifests/.

No cluster is needed. What runs where:

* rendering needs ``kubectl`` (its built-in kustomize);
* schema validation runs in-process with the vendored validator and schemas in
  ``tests/manifests/`` (nothing outside this repository is needed);
* the script tests need ``shellcheck`` and ``curl`` (installed by ``make test``).

Everything else is plain Python over the rendered YAML: the cross-file contracts
(ScaledObject -> Deployment names, scalerAddress -> Service port, collector exporter ->
Service port, filter -> metrics the queries use, TLS wiring) that no schema can see.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.manifests import k8svalidate

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"

KEDA_NAMESPACE = "keda"
SCALER_HOST = f"keda-otel-scaler.{KEDA_NAMESPACE}.svc"
TARGETS = {"prefill": "pd-llm-d-modelservice-prefill", "decode": "pd-llm-d-modelservice-decode"}
SCALED_OBJECT_FILES = {
    "prefill": MANIFESTS / "keda" / "scaledobject-prefill.yaml",
    "decode": MANIFESTS / "keda" / "scaledobject-decode.yaml",
}
VLLM_METRICS_PORT = {"prefill": 8000, "decode": 8200}
COMPAT_OPERATIONS = {"last_one", "rate", "count", "avg", "min", "max", "sum", "increase"}
SCRIPTS = [MANIFESTS / "setup.sh", MANIFESTS / "loadgeneration.sh"]

# Every directory that `kubectl kustomize` must render (components are not standalone).
EXPECTED_KUSTOMIZATIONS = {
    "scaler",
    "scaler-tls",
    "collectors",
    "collectors-tls",
    "keda",
    "keda-push",
    "keda-tls",
    "keda-push-tls",
    "keda-planner",
    "keda-planner/scaler",
    "llm-d",
    "scaler-ha",
    "scaler-ha-tls",
    "collectors-ha",
    "collectors-ha-tls",
}

Doc = dict[str, Any]


# ---------------------------------------------------------------------------- helpers


def _kustomization_dirs() -> list[str]:
    found = []
    for path in sorted(MANIFESTS.rglob("kustomization.yaml")):
        kind = yaml.safe_load(path.read_text()).get("kind", "Kustomization")
        if kind == "Kustomization":
            found.append(path.parent.relative_to(MANIFESTS).as_posix())
    return found


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


@functools.cache
def _render_text(rel_dir: str) -> str:
    kubectl = _need("kubectl")
    proc = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / rel_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl kustomize manifests/{rel_dir} failed:\n{proc.stderr}"
    return proc.stdout


def render(rel_dir: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(_render_text(rel_dir)) if d]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    found: Doc = matches[0]
    return found


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def scaled_objects(rel_dir: str = "keda") -> dict[str, Doc]:
    """The two ScaledObjects of a keda* kustomization, keyed by role."""
    sos = {so["spec"]["scaleTargetRef"]["name"]: so for so in by_kind(render(rel_dir), "ScaledObject")}
    assert set(sos) == set(TARGETS.values())
    return {role: sos[target] for role, target in TARGETS.items()}


def service_port(name: str) -> int:
    svc = one(render("scaler"), "Service", "keda-otel-scaler")
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    return int(ports[name])


def scaler_container(rel_dir: str = "scaler") -> Doc:
    deploy = one(render(rel_dir), "Deployment", "keda-otel-scaler")
    containers: list[Doc] = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def scaler_env(rel_dir: str = "scaler") -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in scaler_container(rel_dir).get("env", [])}


def retention_seconds() -> int:
    return int(scaler_env()["METRIC_STORE_RETENTION_SECONDS"])


def duration_seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+)([smh])", text)
    assert m, f"not a simple duration: {text!r}"
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def values_pd() -> Doc:
    values: Doc = yaml.safe_load((MANIFESTS / "llm-d" / "values-pd.yaml").read_text())
    return values


def collector(role: str, rel_dir: str = "collectors") -> Doc:
    return one(render(rel_dir), "OpenTelemetryCollector", f"vllm-{role}-collector")


def collector_keeps(role: str) -> set[str]:
    """The metric names the role's collector passes through its ``filter/vllm-scaling``."""
    processors = collector(role)["spec"]["config"]["processors"]
    condition = " ".join(processors["filter/vllm-scaling"]["metrics"]["metric"])
    assert condition.strip().startswith("not ("), "the filter must drop everything NOT listed"
    return set(re.findall(r'name == "([^"]+)"', condition))


def alternative_triggers(path: Path) -> dict[str, Doc]:
    """The commented-out ALTERNATIVE trigger blocks of a ScaledObject file, parsed.

    A block runs from ``# BEGIN ALTERNATIVE <name>`` to ``# END ALTERNATIVE``; its YAML
    starts at the commented ``- type:`` line.
    """
    blocks: dict[str, Doc] = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"\s*# BEGIN ALTERNATIVE (\S+)", lines[i])
        if not m:
            i += 1
            continue
        name = m.group(1)
        end = next(j for j in range(i, len(lines)) if re.match(r"\s*# END ALTERNATIVE", lines[j]))
        body = lines[i + 1 : end]
        start = next(k for k, line in enumerate(body) if re.match(r"\s*# - type:", line))
        indent = re.match(r"(\s*)# ", body[start]).group(1)  # type: ignore[union-attr]
        yaml_lines = []
        for line in body[start:]:
            assert line.startswith(indent + "#"), f"{path.name}/{name}: not a comment line: {line!r}"
            yaml_lines.append(line[len(indent) + 2 :])
        parsed = yaml.safe_load("\n".join(yaml_lines))
        assert isinstance(parsed, list) and len(parsed) == 1, f"{path.name}/{name}: expected one trigger"
        blocks[name] = parsed[0]
        i = end + 1
    return blocks


def all_triggers() -> Iterator[tuple[str, str, Doc]]:
    """(role, label, trigger) for every active and every commented-out alternative trigger."""
    for role, so in scaled_objects().items():
        for trig in so["spec"]["triggers"]:
            yield role, trig["metadata"]["metricName"], trig
        for name, trig in alternative_triggers(SCALED_OBJECT_FILES[role]).items():
            yield role, f"alternative {name}", trig


# --------------------------------------------------------------------------- rendering


def test_the_expected_kustomizations_exist() -> None:
    assert set(_kustomization_dirs()) == EXPECTED_KUSTOMIZATIONS


@pytest.mark.parametrize("rel_dir", sorted(EXPECTED_KUSTOMIZATIONS))
def test_kustomization_renders(rel_dir: str) -> None:
    docs = render(rel_dir)
    assert docs, f"manifests/{rel_dir} rendered nothing"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys()


@pytest.mark.parametrize("rel_dir", sorted(EXPECTED_KUSTOMIZATIONS))
def test_no_resource_hard_codes_a_namespace(rel_dir: str) -> None:
    # Namespaces come from `kubectl apply -n` (setup.sh), never from the files.
    for doc in render(rel_dir):
        assert "namespace" not in doc["metadata"], f"{doc['kind']}/{doc['metadata']['name']}"
    kustomization = yaml.safe_load((MANIFESTS / rel_dir / "kustomization.yaml").read_text())
    assert "namespace" not in kustomization


# ---------------------------------------------------------------- schema validation


# Kinds the vendored schemas do not cover (see tests/manifests/schemas/README.md).
UNSCHEMED_GROUPS = ("cert-manager.io/",)


def assert_valid(results: list[k8svalidate.Result], docs: list[Doc], allowed_skips: tuple[str, ...]) -> None:
    """No FAIL, and a SKIP only for a document of an allowed API group."""
    assert len(results) == len(docs)
    fails = [str(r) for r in results if r.status == "FAIL"]
    assert not fails, "\n".join(fails)
    for result, doc in zip(results, docs, strict=True):
        if result.status == "SKIP":
            assert doc["apiVersion"].startswith(allowed_skips), str(result)


@pytest.mark.parametrize("rel_dir", sorted(EXPECTED_KUSTOMIZATIONS))
def test_rendered_documents_validate(rel_dir: str) -> None:
    results = k8svalidate.validate_text(_render_text(rel_dir))
    assert_valid(results, render(rel_dir), UNSCHEMED_GROUPS)
    skipped = [r for r in results if r.status == "SKIP"]
    cert_manager_docs = [d for d in render(rel_dir) if d["apiVersion"].startswith("cert-manager.io/")]
    assert len(skipped) == len(cert_manager_docs)


def test_values_pd_matches_the_chart_values_schema() -> None:
    (values,) = k8svalidate.load_documents((MANIFESTS / "llm-d" / "values-pd.yaml").read_text())
    assert k8svalidate.validate_values(values, "llm-d-modelservice-values.schema.json") == ""


def test_alternative_triggers_validate_inside_their_scaled_object() -> None:
    # Uncommenting an ALTERNATIVE block must give a schema-valid ScaledObject.
    for role, so in scaled_objects().items():
        alternatives = list(alternative_triggers(SCALED_OBJECT_FILES[role]).values())
        assert alternatives, f"{role}: no ALTERNATIVE block"
        extended = json.loads(json.dumps(so))
        extended["spec"]["triggers"].extend(alternatives)
        result = k8svalidate.validate(extended)
        assert result.status == "OK", str(result)


BROKEN = {
    "unknown container field": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n"
        "  template:\n    metadata: {labels: {a: b}}\n"
        "    spec:\n      containers: [{name: c, image: i, imagePullPolicyy: Always}]\n",
        '$.spec.template.spec.containers[0].imagePullPolicyy: unknown field "imagePullPolicyy"',
    ),
    "integer trigger metadata": (
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: s}\nspec:\n  scaleTargetRef: {name: d}\n"
        "  triggers: [{type: external, metadata: {targetValue: 40}}]\n",
        "$.spec.triggers[0].metadata.targetValue: 40 is not of type 'string'",
    ),
    "misspelled ScaledObject field": (
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: s}\nspec:\n  scaleTargetRef: {name: d}\n"
        "  minReplicaCnt: 1\n  triggers: [{type: external, metadata: {}}]\n",
        '$.spec.minReplicaCnt: unknown field "minReplicaCnt"',
    ),
    "duplicate key": ("apiVersion: v1\nkind: Service\nmetadata: {name: a, name: b}\n", "found duplicate key 'name'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_validator_rejects_what_the_api_server_would(case: str) -> None:
    text, reason = BROKEN[case]
    (result,) = k8svalidate.validate_text(text)
    assert result.status == "FAIL"
    assert reason in result.reason, result.reason


# ------------------------------------------------------------------ ScaledObjects


def test_scaled_object_files_hold_exactly_one_scaled_object_each() -> None:
    # A simulator in this repo reads these very files.
    for role, path in SCALED_OBJECT_FILES.items():
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, path
        assert docs[0]["kind"] == "ScaledObject"
        assert docs[0]["metadata"]["name"] == f"pd-{role}"
        assert docs[0]["spec"]["scaleTargetRef"]["name"] == TARGETS[role]


def test_scale_targets_are_the_deployments_the_chart_creates() -> None:
    # llm-d-modelservice names them <release>-llm-d-modelservice-<role>; release `pd`.
    for role, so in scaled_objects().items():
        ref = so["spec"]["scaleTargetRef"]
        assert ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"pd-llm-d-modelservice-{role}"}


def test_scaler_address_is_the_services_keda_port() -> None:
    keda_port = service_port("keda")
    assert keda_port == 4318
    assert str(keda_port) == scaler_env()["KEDA_EXTERNAL_SCALER_PORT"]
    for _, label, trig in all_triggers():
        host, _, port = trig["metadata"]["scalerAddress"].rpartition(":")
        assert host == SCALER_HOST, label
        assert int(port) == keda_port, label


def test_every_trigger_is_well_formed() -> None:
    retention = retention_seconds()
    for role, label, trig in all_triggers():
        meta = trig["metadata"]
        assert trig["type"] == "external", label
        # KEDA's admission webhook rejects `fallback` unless every trigger is AverageValue.
        assert trig["metricType"] == "AverageValue", label
        assert all(isinstance(v, str) for v in meta.values()), f"{label}: metadata values must be strings"
        assert float(meta["targetValue"]) > 0, label
        assert ("query" in meta) != ("metricQuery" in meta), f"{label}: exactly one of query/metricQuery"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["metricName"]), label
        assert len(meta["metricName"]) <= 63, label
        assert not ({"valueIfNotFound", "errIfNotFound"} <= meta.keys()), f"{label}: pick one"
        if "valueIfNotFound" in meta:
            float(meta["valueIfNotFound"])
        if "errIfNotFound" in meta:
            assert meta["errIfNotFound"] in {"true", "false"}, label
        if "activationThreshold" in meta:
            float(meta["activationThreshold"])
        if "metricQuery" in meta:
            assert meta.get("operationOverTime", "last_one") in COMPAT_OPERATIONS, label
        if "window" in meta:
            assert duration_seconds(meta["window"]) <= retention, label
        text = meta.get("query") or meta["metricQuery"]
        for rng in re.findall(r"\[(\w+)\]", text):
            assert duration_seconds(rng) <= retention, f"{label}: range [{rng}] exceeds the retention"
        # Queries select the scaled Deployment's own pods, except the documented
        # scale-to-zero wake-up trigger, which watches the decode pods on purpose.
        if label != "alternative prefill-activation-from-decode":
            assert TARGETS[role] in text, label


def test_triggers_use_both_query_forms_and_unique_metric_names() -> None:
    forms: set[str] = set()
    for role, so in scaled_objects().items():
        names = [t["metadata"]["metricName"] for t in so["spec"]["triggers"]]
        assert len(names) == len(set(names)), role
        assert [t["name"] for t in so["spec"]["triggers"]] == names, role
        forms |= {"compat" if "metricQuery" in t["metadata"] else "promql" for t in so["spec"]["triggers"]}
    assert forms == {"compat", "promql"}


def test_every_query_parses_with_the_scalers_query_engine() -> None:
    from scaler import query

    for _, label, trig in all_triggers():
        meta = trig["metadata"]
        try:
            if "query" in meta:
                query.parse_promql(meta["query"])
            else:
                query.parse_compat(meta["metricQuery"])
        except Exception as exc:
            pytest.fail(f"{label}: {exc}")


def test_replica_bounds_fallback_and_hpa_behaviour() -> None:
    for role, so in scaled_objects().items():
        spec = so["spec"]
        assert spec["minReplicaCount"] == 1, role
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"] <= 8, role
        assert spec["pollingInterval"] == 5, role
        assert spec["cooldownPeriod"] == 60, role
        assert spec["fallback"]["failureThreshold"] == 3, role
        assert spec["minReplicaCount"] <= spec["fallback"]["replicas"] <= spec["maxReplicaCount"], role
        assert spec["fallback"]["behavior"] == "currentReplicasIfHigher", role
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0, role
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 60, role
        assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}], role


def test_keda_push_only_changes_the_trigger_type() -> None:
    plain, push = scaled_objects("keda"), scaled_objects("keda-push")
    for role in TARGETS:
        assert {t["type"] for t in push[role]["spec"]["triggers"]} == {"external-push"}
        for t in push[role]["spec"]["triggers"]:
            t["type"] = "external"
        assert push[role] == plain[role]


@pytest.mark.parametrize("rel_dir", ["keda-tls", "keda-push-tls"])
def test_tls_scaled_objects_reference_the_trigger_authentication(rel_dir: str) -> None:
    auth = one(render("scaler-tls"), "ClusterTriggerAuthentication")
    for role, so in scaled_objects(rel_dir).items():
        for trig in so["spec"]["triggers"]:
            assert trig["authenticationRef"] == {
                "kind": "ClusterTriggerAuthentication",
                "name": auth["metadata"]["name"],
            }, role
            # TLS comes from the auth parameters; never switch verification off.
            assert "unsafeSsl" not in trig["metadata"], role


# ------------------------------------------------------------------------ collectors


def test_collectors_are_the_sidecars_the_model_pods_ask_for() -> None:
    values = values_pd()
    for role in TARGETS:
        col = collector(role)
        assert col["apiVersion"] == "opentelemetry.io/v1beta1"
        assert col["spec"]["mode"] == "sidecar"
        assert values[role]["podAnnotations"] == {"sidecar.opentelemetry.io/inject": col["metadata"]["name"]}


def test_collectors_scrape_the_vllm_metrics_port_every_5s() -> None:
    values = values_pd()
    for role, port in VLLM_METRICS_PORT.items():
        jobs = collector(role)["spec"]["config"]["receivers"]["prometheus"]["config"]["scrape_configs"]
        assert len(jobs) == 1
        assert jobs[0]["scrape_interval"] == "5s"
        assert jobs[0]["static_configs"] == [{"targets": [f"localhost:{port}"]}]
        # The same port is the one values-pd.yaml names `metrics` on the vllm container.
        vllm = next(c for c in values[role]["containers"] if c["name"] == "vllm")
        named = {p["name"]: p["containerPort"] for p in vllm["ports"]}
        assert named["metrics"] == port


def test_collector_exporter_targets_the_services_otlp_port() -> None:
    otlp_port = service_port("otlp-grpc")
    assert otlp_port == 4317
    assert str(otlp_port) == scaler_env()["OTLP_RECEIVER_PORT"]
    for role in TARGETS:
        config = collector(role)["spec"]["config"]
        exporters = config["service"]["pipelines"]["metrics"]["exporters"]
        assert len(exporters) == 1
        assert exporters[0].split("/")[0] == "otlp"
        exporter = config["exporters"][exporters[0]]
        assert exporter["endpoint"] == f"{SCALER_HOST}:{otlp_port}"
        assert exporter["tls"] == {"insecure": True}


def test_collector_pipeline_order_and_batching() -> None:
    for role in TARGETS:
        config = collector(role)["spec"]["config"]
        pipeline = config["service"]["pipelines"]["metrics"]
        assert pipeline["receivers"] == ["prometheus"]
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter"
        assert processors[-1] == "batch"
        for name in processors:
            assert name in config["processors"], name
        assert duration_seconds(config["processors"]["batch"]["timeout"]) <= 1


def test_collector_filter_keeps_every_metric_the_queries_use() -> None:
    used = set()
    for _, _, trig in all_triggers():
        text = trig["metadata"].get("query") or trig["metadata"]["metricQuery"]
        for name in re.findall(r"vllm:[a-z_:]+", text):
            # Histograms are sent under their base name.
            used.add(re.sub(r"_(bucket|count|sum)$", "", name))
    assert used, "no vllm metric found in the ScaledObjects"
    for role in TARGETS:
        kept = collector_keeps(role)
        assert used <= kept, used - kept


def test_collectors_stamp_the_label_the_queries_select_on() -> None:
    # Queries select on `deployment`; the scaler promotes k8s.deployment.name to it.
    promoted = dict(pair.split("=") for pair in scaler_env()["RESOURCE_LABELS"].split(","))
    assert promoted["k8s.deployment.name"] == "deployment"
    for role, target in TARGETS.items():
        config = collector(role)["spec"]["config"]
        assert config["processors"]["resourcedetection/env"]["detectors"] == ["env"]
        attrs = {a["key"]: a for a in config["processors"]["resource/k8s-fallback"]["attributes"]}
        assert attrs["k8s.deployment.name"]["value"] == target
        # insert, never overwrite what the operator injected.
        assert {a["action"] for a in attrs.values()} == {"insert"}
        env = {e["name"] for e in collector(role)["spec"]["env"]}
        for a in attrs.values():
            for var in re.findall(r"\$\{env:(\w+)\}", str(a["value"])):
                assert var in env, var


# ---------------------------------------------------------------------- the scaler


def test_scaler_deployment_hardening() -> None:
    deploy = one(render("scaler"), "Deployment", "keda-otel-scaler")
    pod = deploy["spec"]["template"]["spec"]
    container = scaler_container()
    assert deploy["spec"]["replicas"] == 1  # in-memory store
    assert container["image"] == "ghcr.io/keda-otel-scaler/keda-otel-scaler:0.1.0"
    assert container["args"] == ["serve"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["terminationGracePeriodSeconds"] >= 10
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["tmp"] == "/tmp"
    assert "emptyDir" in volumes["tmp"]
    # the snapshot lives on a writable volume (the root filesystem is read-only)
    snapshot = PurePosixPath(scaler_env()["SNAPSHOT_PATH"])
    assert str(snapshot.parent) == mounts["state"] and "emptyDir" in volumes["state"]
    assert float(scaler_env()["SNAPSHOT_INTERVAL_SECONDS"]) > 0
    # the warm-up outlasts a few export intervals of the collectors
    assert float(scaler_env()["WARMUP_SECONDS"]) >= 3 * 5
    assert scaler_env()["LOG_FORMAT"] == "json"
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == one(render("scaler"), "ServiceAccount")["metadata"]["name"]


def test_service_ports_match_the_container() -> None:
    svc = one(render("scaler"), "Service", "keda-otel-scaler")
    container_ports = {p["name"]: p["containerPort"] for p in scaler_container()["ports"]}
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"otlp-grpc": 4317, "keda": 4318, "http": 9090}
    for port in svc["spec"]["ports"]:
        assert container_ports[port["targetPort"]] == port["port"]
    env = scaler_env()
    assert env["REST_API_PORT"] == str(container_ports["http"])
    pod_labels = one(render("scaler"), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_network_policy_admits_exactly_the_intended_peers() -> None:
    docs = render("scaler")
    policy = one(docs, "NetworkPolicy")["spec"]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    container_ports = {p["name"] for p in scaler_container()["ports"]}
    by_port: dict[str, list[Doc]] = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            assert port["port"] in container_ports
            by_port.setdefault(port["port"], []).extend(rule["from"])
    # 4318 (KEDA): only from KEDA's namespace.
    assert by_port["keda"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": KEDA_NAMESPACE}}}]
    # 4317 (OTLP): only pods with an injected collector sidecar, or operator-made collectors.
    otlp_peers = by_port["otlp-grpc"]
    assert {
        "namespaceSelector": {},
        "podSelector": {"matchExpressions": [{"key": "sidecar.opentelemetry.io/injected", "operator": "Exists"}]},
    } in otlp_peers
    assert all("podSelector" in peer for peer in otlp_peers)
    # 9090: the same producers (OTLP/HTTP) plus anything in the scaler's namespace.
    assert {"podSelector": {}} in by_port["http"]


def test_pod_disruption_budget_selects_the_scaler_and_does_not_block_drains() -> None:
    docs = render("scaler")
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb.get("maxUnavailable") == 1  # one replica: minAvailable 1 would block drains


# ------------------------------------------------------------------------------ TLS


def test_scaler_tls_wiring() -> None:
    docs = render("scaler-tls")
    certs = {c["metadata"]["name"]: c["spec"] for c in by_kind(docs, "Certificate")}
    issuers = {i["metadata"]["name"]: i["spec"] for i in by_kind(docs, "Issuer")}
    server = certs["keda-otel-scaler-server"]
    client = certs["keda-otel-scaler-keda-client"]
    ca = certs["keda-otel-scaler-ca"]
    assert ca["isCA"] is True
    assert issuers[ca["issuerRef"]["name"]] == {"selfSigned": {}}
    for leaf in (server, client):
        assert issuers[leaf["issuerRef"]["name"]] == {"ca": {"secretName": ca["secretName"]}}
    assert SCALER_HOST in server["dnsNames"]
    assert "server auth" in server["usages"]
    assert "client auth" in client["usages"]

    container = scaler_container("scaler-tls")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    env = scaler_env("scaler-tls")
    for var in (
        "KEDA_TLS_CERT_FILE",
        "KEDA_TLS_KEY_FILE",
        "KEDA_TLS_CA_FILE",
        "OTLP_TLS_CERT_FILE",
        "OTLP_TLS_KEY_FILE",
        "REST_TLS_CERT_FILE",
        "REST_TLS_KEY_FILE",
    ):
        assert var in env, var
    # No client-certificate requirement on REST: kubelet probes present none.
    assert "REST_TLS_CA_FILE" not in env
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for var, path in env.items():
        if var.endswith("_FILE"):
            directory, _, key = path.rpartition("/")
            assert secrets[mounts[directory]] == server["secretName"], var
            assert key in {"tls.crt", "tls.key", "ca.crt"}, var
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe

    auth = one(docs, "ClusterTriggerAuthentication")["spec"]["secretTargetRef"]
    assert {(r["parameter"], r["name"], r["key"]) for r in auth} == {
        ("caCert", client["secretName"], "ca.crt"),
        ("tlsClientCert", client["secretName"], "tls.crt"),
        ("tlsClientKey", client["secretName"], "tls.key"),
    }


def test_collectors_tls_trust_the_copied_ca() -> None:
    setup = (MANIFESTS / "setup.sh").read_text()
    for role in TARGETS:
        spec = collector(role, "collectors-tls")["spec"]
        tls = spec["config"]["exporters"]["otlp/keda-otel-scaler"]["tls"]
        assert tls["insecure"] is False
        directory, _, key = tls["ca_file"].rpartition("/")
        assert key == "ca.crt"
        mount = next(m for m in spec["volumeMounts"] if m["mountPath"] == directory)
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        secret = volume["secret"]["secretName"]
        assert f"create secret generic {secret}" in setup


# ------------------------------------------------------------------ llm-d values


def test_values_pd_runs_opt125m_on_one_l4_per_pod() -> None:
    values = values_pd()
    assert values["modelArtifacts"]["name"] == "facebook/opt-125m"
    assert values["routing"]["servicePort"] == 8000
    assert values["routing"]["proxy"]["targetPort"] == VLLM_METRICS_PORT["decode"]
    for role in TARGETS:
        spec = values[role]
        assert spec["replicas"] == scaled_objects()[role]["spec"]["minReplicaCount"]
        assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        vllm = next(c for c in spec["containers"] if c["name"] == "vllm")
        for kind in ("requests", "limits"):
            assert vllm["resources"][kind]["nvidia.com/gpu"] == "1"
    decode_args = next(c for c in values["decode"]["containers"] if c["name"] == "vllm")["args"]
    # decode-running's target (200) is sized against max-num-seqs 256.
    assert decode_args[decode_args.index("--max-num-seqs") + 1] == "256"
    running = next(t for t in scaled_objects()["decode"]["spec"]["triggers"] if t["name"] == "decode-running")
    assert "vllm:num_requests_running" in running["metadata"]["query"]
    assert float(running["metadata"]["targetValue"]) < 256


def test_inference_pool_selects_the_model_pods() -> None:
    pool_values = yaml.safe_load((MANIFESTS / "llm-d" / "inferencepool-values.yaml").read_text())
    labels = values_pd()["modelArtifacts"]["labels"]
    assert pool_values["inferencePool"]["modelServers"]["matchLabels"].items() <= labels.items()
    assert pool_values["inferencePool"]["targetPorts"] == [{"number": values_pd()["routing"]["servicePort"]}]
    epp = yaml.safe_load(pool_values["inferenceExtension"]["pluginsCustomConfig"]["pd-config.yaml"])
    plugin_types = {p["type"] for p in epp["plugins"]}
    assert {"prefix-based-pd-decider", "prefill-header-handler"} <= plugin_types
    route = one(render("llm-d"), "HTTPRoute")
    backend = route["spec"]["rules"][0]["backendRefs"][0]
    assert backend["kind"] == "InferencePool"
    # The inferencepool chart names the pool after its release, installed as gaie-pd.
    assert backend["name"] == "gaie-pd"
    assert "helm upgrade -i gaie-pd" in (MANIFESTS / "llm-d" / "inferencepool-values.yaml").read_text()


# --------------------------------------------------------------------------- scripts


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_syntax(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_help(script: Path) -> None:
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage:")
    bad = subprocess.run([str(script), "--no-such-option"], capture_output=True, text=True, check=False, timeout=30)
    assert bad.returncode == 2


def _fake_tools(tmp_path: Path, script: dict[str, str]) -> tuple[dict[str, str], Path]:
    """A PATH whose kubectl/helm run the given shell bodies and log their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "calls.log"
    for tool, body in script.items():
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n{body}\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return env, calls


def setup_dry_run(tmp_path: Path, *args: str) -> str:
    """``setup.sh --dry-run ARGS``'s output, checked to succeed and to run no kubectl or helm."""
    env, calls = _fake_tools(tmp_path, {"kubectl": "exit 97", "helm": "exit 97"})
    proc = subprocess.run(
        [str(MANIFESTS / "setup.sh"), "--dry-run", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not calls.exists(), f"dry run executed: {calls.read_text()}"
    return proc.stdout


DRY_RUN_CASES = {
    "default": ([], "scaler", "collectors", "keda"),
    "push": (["--push"], "scaler", "collectors", "keda-push"),
    "tls": (["--tls"], "scaler-tls", "collectors-tls", "keda-tls"),
    "tls-push": (["--tls", "--push"], "scaler-tls", "collectors-tls", "keda-push-tls"),
}


@pytest.mark.parametrize("case", sorted(DRY_RUN_CASES))
def test_setup_dry_run_prints_the_steps_in_order_and_runs_nothing(tmp_path: Path, case: str) -> None:
    flags, scaler_dir, collectors_dir, keda_dir = DRY_RUN_CASES[case]
    out = setup_dry_run(tmp_path, "--namespace", "llm-d", *flags)
    expected = [
        "+ kubectl get crd certificates.cert-manager.io",
        "+ helm repo add kedacore https://kedacore.github.io/charts",
        "+ helm upgrade --install keda kedacore/keda --namespace keda --create-namespace",
        "+ helm upgrade --install opentelemetry-operator open-telemetry/opentelemetry-operator",
        f"+ kubectl apply -n keda -k {shlex.quote(str(MANIFESTS / scaler_dir))}\n",
        "+ kubectl -n keda rollout status deployment/keda-otel-scaler",
        f"+ kubectl apply -n llm-d -k {shlex.quote(str(MANIFESTS / collectors_dir))}\n",
        "+ kubectl -n llm-d rollout restart deployment/pd-llm-d-modelservice-prefill",
        "+ kubectl -n llm-d rollout restart deployment/pd-llm-d-modelservice-decode",
        f"+ kubectl apply -n llm-d -k {shlex.quote(str(MANIFESTS / keda_dir))}\n",
    ]
    position = 0
    for needle in expected:
        found = out.find(needle, position)
        assert found >= 0, f"{needle!r} missing or out of order in:\n{out}"
        position = found + len(needle)
    if "--tls" in flags:
        assert "create secret generic keda-otel-scaler-ca-cert -n llm-d" in out


def test_setup_dry_run_rewrites_the_scaler_host_for_another_keda_namespace(tmp_path: Path) -> None:
    out = setup_dry_run(tmp_path, "--keda-namespace", "autoscaling")
    line = next(
        x
        for x in out.splitlines()
        if x.startswith("+ kubectl kustomize") and x.endswith("-f -") and "/keda " in x + " "
    )
    # Run the printed rewrite on the real render: no reference to the "keda" namespace
    # may survive.
    sed = line.split(" | ")[1]
    rewritten = subprocess.run(
        ["bash", "-c", sed], input=_render_text("keda"), capture_output=True, text=True, check=True
    ).stdout
    assert "keda-otel-scaler.autoscaling.svc:4318" in rewritten
    assert ".keda.svc" not in rewritten
    assert "--namespace autoscaling" in out


def test_setup_rejects_a_bad_namespace(tmp_path: Path) -> None:
    env, _ = _fake_tools(tmp_path, {"kubectl": "exit 97", "helm": "exit 97"})
    proc = subprocess.run(
        [str(MANIFESTS / "setup.sh"), "--dry-run", "--namespace", "Bad_NS"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "not a valid namespace" in proc.stderr


class _Completions:
    """A local stand-in for the Gateway: records POST bodies, answers 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Doc]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outer.requests.append((self.path, body))
                payload = b'{"choices":[{"text":"ok"}]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Completions:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _loadgen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    _need("curl")
    return subprocess.run(
        [str(MANIFESTS / "loadgeneration.sh"), *args], capture_output=True, text=True, env=env, check=False, timeout=60
    )


def test_loadgeneration_unique_sends_distinct_long_prompts() -> None:
    with _Completions() as srv:
        proc = _loadgen(
            "--url",
            f"http://127.0.0.1:{srv.port}",
            "--mode",
            "unique",
            "--count",
            "5",
            "--concurrency",
            "2",
            "--prompt-words",
            "40",
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary: requests=5 ok=5 failed=0" in proc.stdout
    assert len(srv.requests) == 5
    prompts = [body["prompt"] for _, body in srv.requests]
    assert len(set(prompts)) == 5
    # Different from the first words on, so the prefix cache cannot help.
    assert len({" ".join(p.split()[:2]) for p in prompts}) == 5
    for path, body in srv.requests:
        assert path == "/v1/completions"
        assert body["model"] == "facebook/opt-125m"
        assert len(body["prompt"].split()) >= 40


def test_loadgeneration_repeated_sends_one_prompt_for_a_bounded_time() -> None:
    with _Completions() as srv:
        proc = _loadgen(
            "--url",
            f"http://127.0.0.1:{srv.port}/",
            "--mode",
            "repeated",
            "--duration",
            "2",
            "--concurrency",
            "2",
            "--prompt-words",
            "30",
            "--quiet",
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert srv.requests
    assert len({body["prompt"] for _, body in srv.requests}) == 1
    assert "worker=" not in proc.stdout  # --quiet


def test_loadgeneration_finds_the_gateway_address_with_kubectl(tmp_path: Path) -> None:
    with _Completions() as srv:
        env, calls = _fake_tools(tmp_path, {"kubectl": "printf 127.0.0.1"})
        proc = _loadgen(
            "--gateway", "my-gateway", "--gateway-namespace", "llm-d", "--port", str(srv.port), "--count", "2", env=env
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(srv.requests) == 2
    assert calls.read_text().split() == [
        "kubectl",
        "get",
        "gateway",
        "my-gateway",
        "-n",
        "llm-d",
        "-o",
        "jsonpath={.status.addresses[0].value}",
    ]


def test_loadgeneration_fails_when_nothing_answers() -> None:
    proc = _loadgen("--url", "http://127.0.0.1:9", "--count", "2", "--timeout", "5", "--quiet")
    assert proc.returncode == 1
    assert "ok=0 failed=2" in proc.stdout


# ---------------------------------------------------------------------------- README


def test_readme_covers_the_walkthrough() -> None:
    readme = (MANIFESTS / "README.md").read_text()
    for needle in (
        "helm upgrade -i pd llm-d-modelservice/llm-d-modelservice",
        "-f manifests/llm-d/values-pd.yaml",
        "inferencepool",
        "prefix-based-pd-decider",
        "./setup.sh",
        "./loadgeneration.sh --mode repeated",
        "./loadgeneration.sh --mode unique",
        "/memstore/data",
        "/memstore/query",
        '"operationOverTime": "count"',
        "kubectl get hpa,scaledobject -w",
        "g2-standard-8",
        "cert-manager",
    ):
        assert needle in readme, needle
