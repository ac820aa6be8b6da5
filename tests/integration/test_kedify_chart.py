"""keda-otel-scaler runs unchanged under kedify/otel-add-on's Helm chart: swap the image, keep the
chart (issue 16). The scaler runs with the exact container ``args`` and ``env`` that the chart
v0.1.4 (tag ``55645cd305a354686a6b5816d22ec3fe6d963a91``) renders for its default values and for
its TLS examples (all with KEDA TLS off), and KEDA (plaintext gRPC on 4318), OTLP (4317) and REST
(the chart's probes: ``GET /info`` on 9090) all work, as does the internal-metrics port (8080).

Source of the rendering, ``helmchart/otel-add-on/``:

* ``templates/deployment.yaml:44-90`` — ``env``: the ports (``service.otlpReceiverPort``,
  ``service.kedaExternalScalerPort``, ``settings.internalMetricsPort``, ``settings.restApiPort``),
  the metric store (``settings.metricStore.*``), ``IS_ACTIVE_POLLING_INTERVAL_MS``
  (``settings.isActivePollingIntervalMilliseconds``), the OTLP TLS files and reload interval
  (``settings.tls.*``), ``KEDA_TLS_ENABLED`` (``settings.tls.keda.enabled``) and, at lines
  80-83, ``KEDA_TLS_CERT_FILE``/``KEDA_TLS_KEY_FILE`` = ``settings.tls.keda.certFile | default
  settings.tls.certFile`` (and the key likewise). ``NO_COLOR``/``NO_BANNER`` only when truthy
  (lines 84-91), so not for these values. Every value goes through ``quote``: ``0.`` renders
  ``"0"``, ``false`` ``"false"``.
* ``templates/deployment.yaml:92-94`` — ``args: [--zap-log-level=<settings.logs.logLvl>,
  --zap-stacktrace-level=<settings.logs.stackTracesLvl>]``; they replace the image's ``CMD``.
* ``templates/deployment.yaml:95-110`` — liveness and readiness: ``httpGet /info`` on
  ``settings.restApiPort``.
* ``values.yaml`` defaults: ports 4317/4318/8080/9090, ``retentionSeconds: 120``,
  ``lazySeries``/``lazyAggregates``/``errIfNotFound: false``, ``valueIfNotFound: 0.``,
  ``isActivePollingIntervalMilliseconds: 500``, ``logLvl: info``, ``stackTracesLvl: error``,
  ``tls.caFile/certFile/keyFile: ""``, ``tls.reloadInterval: "5m"``, ``tls.keda.enabled: false``.
* TLS examples: ``examples/metric-pull/scaler-with-collector-pull-tls-values.yaml`` (CA, cert and
  key under ``/etc/ca-certificate`` and ``/etc/server-tls``, ``logLvl: debug``; its
  ``settings.metricStoreRetentionSeconds: 20`` is not a key the chart reads),
  ``examples/otel-operator/tls-overlay-values.yaml`` (the same files, ``reloadInterval: 15s``)
  and ``examples/pipelines-tls/scaler-pipelines-tls-values.yaml`` (``/etc/scaler-tls``,
  ``retentionSeconds: 30``, ``logLvl: debug``, ``reloadInterval: "15s"``).

Only the certificate paths are changed (they point at test certificates). In a private network
namespace (``unshare -rn``) the chart's ports and its bind-all address are used as they are;
where namespaces are not available, the four port numbers are replaced by free ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scaler.runner import free_ports
from tests.integration.kedify_chart import ARGS_DEBUG, ARGS_DEFAULT, ENV_DEFAULT
from tests.integration.test_tls import issue, make_ca

ROOT = Path(__file__).resolve().parents[2]


def tls_env(ca: str, cert: str, key: str, reload: str, retention: str = "120") -> dict[str, str]:
    """The env of a TLS example: the OTLP files, and the KEDA files defaulted from them."""
    return {
        **ENV_DEFAULT,
        "METRIC_STORE_RETENTION_SECONDS": retention,
        "OTLP_TLS_CA_FILE": ca,
        "OTLP_TLS_CERT_FILE": cert,
        "OTLP_TLS_KEY_FILE": key,
        "OTLP_CERTIFICATE_RELOAD_INTERVAL": reload,
        "KEDA_TLS_CERT_FILE": cert,
        "KEDA_TLS_KEY_FILE": key,
    }


SCENARIOS: dict[str, tuple[list[str], dict[str, str]]] = {
    "default values": (ARGS_DEFAULT, ENV_DEFAULT),
    "metric-pull TLS example": (
        ARGS_DEBUG,
        tls_env("/etc/ca-certificate/rootCA.crt", "/etc/server-tls/tls.crt", "/etc/server-tls/tls.key", "5m"),
    ),
    "otel-operator TLS overlay": (
        ARGS_DEFAULT,
        tls_env("/etc/ca-certificate/rootCA.crt", "/etc/server-tls/tls.crt", "/etc/server-tls/tls.key", "15s"),
    ),
    "pipelines-tls example": (
        ARGS_DEBUG,
        tls_env("/etc/ca-certificate/rootCA.crt", "/etc/scaler-tls/tls.crt", "/etc/scaler-tls/tls.key", "15s", "30"),
    ),
}
PORT_VARIABLES = {
    "otlp": "OTLP_RECEIVER_PORT",
    "keda": "KEDA_EXTERNAL_SCALER_PORT",
    "http": "REST_API_PORT",
    "metrics": "INTERNAL_METRICS_PORT",
}


def netns_available() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    return subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False).returncode == 0


NETNS = netns_available()


def run_scenario(args: list[str], env: dict[str, str], tmp: Path) -> dict[str, Any]:
    env = dict(env)
    tls: dict[str, str] = {}
    if env["OTLP_TLS_CERT_FILE"]:
        ca, ca_cert, ca_key = make_ca("test-ca")
        server, client = issue(ca_cert, ca_key, "keda-otel-scaler", True), issue(ca_cert, ca_key, "collector", False)
        files = {
            "ca": ca.cert,
            "cert": server.cert,
            "key": server.key,
            "client_cert": client.cert,
            "client_key": client.key,
        }
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        paths = {
            env["OTLP_TLS_CA_FILE"]: str(tmp / "ca"),
            env["OTLP_TLS_CERT_FILE"]: str(tmp / "cert"),
            env["OTLP_TLS_KEY_FILE"]: str(tmp / "key"),
        }
        env = {k: paths.get(v, v) for k, v in env.items()}  # only the certificate paths change
        tls = {"ca": str(tmp / "ca"), "client_cert": str(tmp / "client_cert"), "client_key": str(tmp / "client_key")}
    if NETNS:
        ports = {name: int(env[variable]) for name, variable in PORT_VARIABLES.items()}
    else:
        ports = dict(zip(PORT_VARIABLES, free_ports(4), strict=True))
        env.update({PORT_VARIABLES[name]: str(port) for name, port in ports.items()})
    scenario = {"args": args, "env": env, "ports": ports, "tls": tls, "netns": NETNS, "log": str(tmp / "scaler.log")}
    (tmp / "scenario.json").write_text(json.dumps(scenario))
    command = [sys.executable, "-m", "tests.integration.kedify_chart", str(tmp / "scenario.json")]
    if NETNS:
        command = ["unshare", "-rn", *command]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout)
    seen["ports"] = ports
    return seen


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_scaler_works_under_kedifys_chart_unchanged(name: str, tmp_path: Path) -> None:
    args, env = SCENARIOS[name]
    seen = run_scenario(args, env, tmp_path)
    log = seen["log"]
    assert "error" not in seen, f"{seen['error']}\n{log}"
    info, ports = seen["info"], seen["ports"]
    # REST: the chart's probes (GET /info on the REST port) and kedify's flat /info
    assert info["restApiPort"] == str(ports["http"]) and info["scalerPort"] == str(ports["keda"])
    assert info["otlpPort"] == str(ports["otlp"]) and info["internalMetricsPort"] == str(ports["metrics"])
    assert info["retentionSeconds"] == env["METRIC_STORE_RETENTION_SECONDS"]
    assert info["config"]["keda_tls_enabled"] is False and info["config"]["is_active_polling_interval_ms"] == 500
    # OTLP (with the client certificate the CA asks for, in the TLS examples)
    assert seen["rejected"] == 0
    series = seen["data"]["vllm:num_requests_waiting"]
    assert sorted(s["labels"]["host.name"] for s in series) == ["node-a", "node-b"]  # two nodes, two series
    # KEDA over plaintext gRPC, although the chart set KEDA_TLS_CERT_FILE in the TLS examples
    assert seen["spec"] == {"name": "llm-d-decode", "target": 4.0}
    assert (seen["value"], seen["active"]) == (8.0, True)
    assert len(seen["stream"]) >= 2 and set(seen["stream"]) == {True}  # repeated every 500 ms
    # the internal-metrics port, scraped as kedify's Service port `internal-metrics` is
    status, scrape = seen["scrape"]
    assert status == 200 and 'keda_otel_scaler_metric_points_written{name="vllm:num_requests_waiting"} 2' in scrape
    assert "# TYPE keda_otel_scaler_runtime_info gauge" in scrape and "keda_otel_scaler_metric_value_clamped{" in scrape
    # the flags and the variables kedify's chart sets are honoured or accepted, with a line each
    level = "debug" if args is ARGS_DEBUG else "info"
    assert f"kedify/otel-add-on logging flags mapped to --log-level={level}" in log
    for variable in ("OTLP_CERTIFICATE_RELOAD_INTERVAL", "METRIC_STORE_LAZY_SERIES", "METRIC_STORE_LAZY_AGGREGATES"):
        assert f"{variable}={env[variable]!r} (kedify/otel-add-on) accepted without effect" in log
    tls_note = "KEDA_TLS_ENABLED=false: the KEDA port serves plaintext gRPC"
    assert (tls_note in log) == bool(env["KEDA_TLS_CERT_FILE"])
    assert seen["exit"] == 0, log  # SIGTERM: graceful stop
