"""Settings: precedence, validation naming the variable, resource-label parsing, secrets."""

from __future__ import annotations

import pytest

from scaler import config


def test_flag_beats_env_beats_default() -> None:
    s = config.load({"rest_api_port": "8080"}, {"REST_API_PORT": "7070", "KEDA_EXTERNAL_SCALER_PORT": "5000"})
    assert (s.rest_api_port, s.keda_external_scaler_port, s.otlp_receiver_port) == (8080, 5000, 4317)


def test_every_interface_variable_is_read() -> None:
    env = {f.env: v for f, v in zip(config.FIELDS, ["x"] * len(config.FIELDS), strict=True)}
    names = set(env)
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


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MAX_SERIES": "0"}, "MAX_SERIES='0'"),
        ({"METRIC_STORE_RETENTION_SECONDS": "-1"}, "METRIC_STORE_RETENTION_SECONDS"),
        ({"METRIC_STORE_ERROR_IF_NOT_FOUND": "perhaps"}, "METRIC_STORE_ERROR_IF_NOT_FOUND"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"RESOURCE_LABELS": "k8s.pod.name"}, "RESOURCE_LABELS"),
        ({"KEDA_TLS_CERT_FILE": "/x.crt"}, "KEDA_TLS_KEY_FILE"),
        ({"REST_TLS_CA_FILE": "/ca.crt"}, "REST_TLS_CERT_FILE"),
        ({"OTLP_RECEIVER_PORT": "65536"}, "OTLP_RECEIVER_PORT"),
    ],
)
def test_invalid_values_fail_fast_naming_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(config.SettingsError, match=fragment):
        config.load({}, env)


def test_resource_labels() -> None:
    s = config.load({}, {"RESOURCE_LABELS": "k8s.deployment.name=deployment, llm-d.ai/role=role"})
    assert s.promotions == {"k8s.deployment.name": "deployment", "llm-d.ai/role": "role"}
    assert config.load({}, {"RESOURCE_LABELS": "-"}).promotions == {}
    assert config.Settings().promotions["k8s.deployment.name"] == "deployment"


def test_public_view_hides_the_admin_token() -> None:
    s = config.load({}, {"ADMIN_TOKEN": "hunter2"})
    assert s.public()["admin_token"] == "<set>"
    assert "hunter2" not in repr(s.public())
