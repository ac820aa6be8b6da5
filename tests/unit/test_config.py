"""Settings: precedence, validation naming the variable, resource-label parsing, secrets, and
everything derived from the one declaration (names, flags, --help, README table)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from scaler import cli, config

README = Path(__file__).resolve().parents[2] / "README.md"

# name (flag and /info key), environment variable, default: as they were before the settings
# moved to pydantic-settings; a user's manifests rely on every one of them.
UNCHANGED = [
    ("listen_address", "LISTEN_ADDRESS", "0.0.0.0"),
    ("otlp_receiver_address", "OTLP_RECEIVER_ADDRESS", ""),
    ("keda_external_scaler_address", "KEDA_EXTERNAL_SCALER_ADDRESS", ""),
    ("rest_api_address", "REST_API_ADDRESS", ""),
    ("otlp_receiver_port", "OTLP_RECEIVER_PORT", 4317),
    ("keda_external_scaler_port", "KEDA_EXTERNAL_SCALER_PORT", 4318),
    ("rest_api_port", "REST_API_PORT", 9090),
    ("resource_labels", "RESOURCE_LABELS", config.DEFAULT_RESOURCE_LABELS),
    ("retention_seconds", "METRIC_STORE_RETENTION_SECONDS", 120.0),
    ("value_if_not_found", "METRIC_STORE_VALUE_IF_NOT_FOUND", 0.0),
    ("error_if_not_found", "METRIC_STORE_ERROR_IF_NOT_FOUND", False),
    ("max_series", "MAX_SERIES", 500_000),
    ("max_labels_per_series", "MAX_LABELS_PER_SERIES", 64),
    ("max_label_name_length", "MAX_LABEL_NAME_LENGTH", 256),
    ("max_label_value_length", "MAX_LABEL_VALUE_LENGTH", 2048),
    ("max_otlp_message_bytes", "MAX_OTLP_MESSAGE_BYTES", 16 * 1024 * 1024),
    ("max_future_skew_seconds", "MAX_FUTURE_SKEW_SECONDS", 300.0),
    ("evaluation_interval_seconds", "EVALUATION_INTERVAL_SECONDS", 60.0),
    ("query_timeout_seconds", "QUERY_TIMEOUT_SECONDS", 120.0),
    ("query_max_samples", "QUERY_MAX_SAMPLES", 50_000_000),
    ("admin_token", "ADMIN_TOKEN", ""),
    ("otlp_tls_cert_file", "OTLP_TLS_CERT_FILE", ""),
    ("otlp_tls_key_file", "OTLP_TLS_KEY_FILE", ""),
    ("otlp_tls_ca_file", "OTLP_TLS_CA_FILE", ""),
    ("keda_tls_cert_file", "KEDA_TLS_CERT_FILE", ""),
    ("keda_tls_key_file", "KEDA_TLS_KEY_FILE", ""),
    ("keda_tls_ca_file", "KEDA_TLS_CA_FILE", ""),
    ("rest_tls_cert_file", "REST_TLS_CERT_FILE", ""),
    ("rest_tls_key_file", "REST_TLS_KEY_FILE", ""),
    ("rest_tls_ca_file", "REST_TLS_CA_FILE", ""),
    ("shutdown_grace_seconds", "SHUTDOWN_GRACE_SECONDS", 10.0),
    ("snapshot_path", "SNAPSHOT_PATH", ""),
    ("snapshot_interval_seconds", "SNAPSHOT_INTERVAL_SECONDS", 0.0),
    ("warmup_seconds", "WARMUP_SECONDS", 60.0),
    ("http_header_timeout_seconds", "HTTP_HEADER_TIMEOUT_SECONDS", 10.0),
    ("http_body_timeout_seconds", "HTTP_BODY_TIMEOUT_SECONDS", 30.0),
    ("http_max_header_bytes", "HTTP_MAX_HEADER_BYTES", 65536),
    ("http_max_connections", "HTTP_MAX_CONNECTIONS", 1024),
    ("log_level", "LOG_LEVEL", "info"),
    ("log_format", "LOG_FORMAT", "text"),
]


def test_flag_beats_env_beats_default() -> None:
    s = config.load({"rest_api_port": "8080"}, {"REST_API_PORT": "7070", "KEDA_EXTERNAL_SCALER_PORT": "5000"})
    listeners = s.listeners
    assert (listeners.rest_api_port, listeners.keda_external_scaler_port, listeners.otlp_receiver_port) == (
        8080,
        5000,
        4317,
    )


def test_every_interface_variable_is_read() -> None:
    names = {s.env for s in config.SETTINGS}
    for expected in (
        "OTLP_RECEIVER_PORT",
        "KEDA_EXTERNAL_SCALER_PORT",
        "REST_API_PORT",
        "RESOURCE_LABELS",
        "METRIC_STORE_RETENTION_SECONDS",
        "METRIC_STORE_VALUE_IF_NOT_FOUND",
        "METRIC_STORE_ERROR_IF_NOT_FOUND",
        "MAX_SERIES",
        "MAX_LABELS_PER_SERIES",
        "MAX_LABEL_NAME_LENGTH",
        "MAX_LABEL_VALUE_LENGTH",
        "MAX_OTLP_MESSAGE_BYTES",
        "MAX_FUTURE_SKEW_SECONDS",
        "ADMIN_TOKEN",
        "OTLP_TLS_CERT_FILE",
        "KEDA_TLS_CA_FILE",
        "REST_TLS_KEY_FILE",
        "LOG_FORMAT",
        "LOG_LEVEL",
    ):
        assert expected in names


def test_names_variables_and_defaults_are_unchanged() -> None:
    """Settings may be added (one declaration); none of these may change or go away."""
    declared = {s.name: s.env for s in config.SETTINGS}
    assert len(declared) == len(config.SETTINGS)  # names are unique
    assert len({s.env for s in config.SETTINGS}) == len(config.SETTINGS)  # and so are variables
    assert {name: declared.get(name) for name, _, _ in UNCHANGED} == {name: env for name, env, _ in UNCHANGED}
    defaults = config.Settings().public()
    assert {name: defaults[name] for name, _, _ in UNCHANGED} == {name: default for name, _, default in UNCHANGED}


@pytest.mark.parametrize(("name", "env", "default"), UNCHANGED)
def test_each_variable_is_read_under_its_name(name: str, env: str, default: object) -> None:
    sample = {str: "x", int: "7", float: "7.5", bool: "true"}[type(default)]
    if name == "resource_labels":
        sample = "a=b"
    elif name in ("log_level", "log_format"):
        sample = {"log_level": "debug", "log_format": "json"}[name]
    environ = {env: sample}
    if "_TLS_" in env:  # a listener's files go together
        prefix = env.split("_TLS_", maxsplit=1)[0] + "_TLS_"
        environ.update({prefix + "CERT_FILE": "c", prefix + "KEY_FILE": "k", env: sample})
    loaded = config.load({}, environ).public()[name]
    expected: object = {str: sample, int: 7, float: 7.5, bool: True}[type(default)]
    assert loaded == ("<set>" if name == "admin_token" else expected)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MAX_SERIES": "0"}, "MAX_SERIES='0'"),
        ({"MAX_SERIES": "lots"}, "MAX_SERIES='lots'"),
        ({"METRIC_STORE_RETENTION_SECONDS": "-1"}, "METRIC_STORE_RETENTION_SECONDS"),
        ({"METRIC_STORE_RETENTION_SECONDS": "inf"}, "METRIC_STORE_RETENTION_SECONDS='inf'"),
        ({"METRIC_STORE_ERROR_IF_NOT_FOUND": "perhaps"}, "METRIC_STORE_ERROR_IF_NOT_FOUND"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml'"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud'"),
        ({"RESOURCE_LABELS": "k8s.pod.name"}, "RESOURCE_LABELS"),
        ({"KEDA_TLS_CERT_FILE": "/x.crt"}, "KEDA_TLS_KEY_FILE"),
        ({"REST_TLS_CA_FILE": "/ca.crt"}, "REST_TLS_CERT_FILE"),
        ({"OTLP_RECEIVER_PORT": "65536"}, "OTLP_RECEIVER_PORT"),
        ({"HTTP_MAX_CONNECTIONS": "-3"}, "HTTP_MAX_CONNECTIONS='-3'"),
        ({"SNAPSHOT_INTERVAL_SECONDS": "-1"}, "SNAPSHOT_INTERVAL_SECONDS"),
    ],
)
def test_invalid_values_fail_fast_naming_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(config.SettingsError, match=re.escape(fragment)):
        config.load({}, env)


def test_an_invalid_flag_is_named_as_the_flag() -> None:
    with pytest.raises(config.SettingsError, match=re.escape("--otlp-receiver-port='70000'")):
        config.load({"otlp_receiver_port": "70000"}, {})
    with pytest.raises(config.SettingsError, match=re.escape("--keda-tls-cert-file and KEDA_TLS_KEY_FILE")):
        config.load({"keda_tls_cert_file": "/x.crt"}, {})


def test_values_are_parsed_as_before() -> None:
    s = config.load({}, {"LOG_LEVEL": "DEBUG", "METRIC_STORE_ERROR_IF_NOT_FOUND": "", "MAX_SERIES": " 12 "})
    assert (s.log.level, s.triggers.error_if_not_found, s.store.max_series) == ("debug", False, 12)
    assert config.load({}, {"METRIC_STORE_ERROR_IF_NOT_FOUND": "on"}).triggers.error_if_not_found is True


def test_only_the_given_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_SERIES", "3")
    assert config.load({}, {}).store.max_series == 500_000
    assert config.StoreLimits().max_series == 500_000  # a group built in code is a plain value
    assert config.load({}, {"MAX_SERIES": "4"}).store.max_series == 4


def test_resource_labels() -> None:
    s = config.load({}, {"RESOURCE_LABELS": "k8s.deployment.name=deployment, llm-d.ai/role=role"})
    assert s.otlp.promotions == {"k8s.deployment.name": "deployment", "llm-d.ai/role": "role"}
    assert config.load({}, {"RESOURCE_LABELS": "-"}).otlp.promotions == {}
    assert config.Settings().otlp.promotions["k8s.deployment.name"] == "deployment"


def test_public_view_hides_the_admin_token() -> None:
    s = config.load({}, {"ADMIN_TOKEN": "hunter2"})
    assert s.public()["admin_token"] == "<set>"
    assert "hunter2" not in repr(s.public())
    assert "hunter2" not in repr(s)
    assert s.access.admin_token.get_secret_value() == "hunter2"


def test_settings_by_flat_name_are_validated() -> None:
    s = config.Settings.of(max_series=10, http_body_timeout_seconds=2, otlp_tls_cert_file="/c", otlp_tls_key_file="/k")
    assert (s.store.max_series, s.http.body_timeout_seconds, s.otlp_tls.active) == (10, 2.0, True)
    assert s.replace(max_series=11).store.max_series == 11 and s.store.max_series == 10
    with pytest.raises(ValueError, match="greater than 0"):
        s.replace(max_series=0)
    with pytest.raises(TypeError, match="unknown setting"):
        s.replace(max_serie=1)


def test_every_setting_has_a_flag_and_help_in_serve_help() -> None:
    parser = cli.build_parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    text = serve.format_help()
    for s in config.SETTINGS:
        assert s.help, s.name
        assert s.flag in text and s.env in text
    args = parser.parse_args(["serve", "--max-series", "9", "--keda-tls-ca-file", "/ca"])
    given = cli.setting_flags(args)
    assert given["max_series"] == "9" and given["keda_tls_ca_file"] == "/ca"
    assert given["rest_api_port"] is None


def test_the_readme_configuration_table_is_the_declaration() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- settings-table: begin.*?-->\n(.*?)<!-- settings-table: end -->", text, re.S)
    assert match, "README.md lacks the settings-table markers"
    assert match.group(1) == config.markdown_table(), (
        "README.md's configuration table differs from scaler/config.py: run `make settings-table`"
    )
