"""The command line under kedify/otel-add-on's chart: arguments without a command mean ``serve``,
its controller-runtime ``--zap-*`` flags map onto our logging settings, and its variables are
honoured or accepted with one log line each (issue 16)."""

from __future__ import annotations

import re

import pytest

from scaler import cli, config, configvalues
from tests.integration.kedify_chart import ARGS_DEFAULT, ENV_DEFAULT


def serve(*argv: str, environ: dict[str, str] | None = None) -> tuple[config.Settings, list[str]]:
    args = cli.build_parser().parse_args(cli.normalize_argv(argv))
    assert args.command == "serve"
    return cli.load_serve_settings(args, environ or {})


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["serve"]),
        (
            ["--zap-log-level=info", "--zap-stacktrace-level=error"],
            ["serve", "--zap-log-level=info", "--zap-stacktrace-level=error"],
        ),
        (["-zap-log-level=debug", "-zap-devel"], ["serve", "--zap-log-level=debug", "--zap-devel"]),
        (["--max-series", "5"], ["serve", "--max-series", "5"]),
        (["serve", "--max-series", "5"], ["serve", "--max-series", "5"]),
        (["query", "x"], ["query", "x"]),
        (["--help"], ["--help"]),
        (["--version"], ["--version"]),
    ],
)
def test_arguments_without_a_command_mean_serve(argv: list[str], expected: list[str]) -> None:
    assert cli.normalize_argv(argv) == expected


@pytest.mark.parametrize(
    ("argv", "level", "fmt"),
    [
        (["--zap-log-level=info", "--zap-stacktrace-level=error"], "info", "text"),  # kedify's chart, default values
        (["--zap-log-level=debug"], "debug", "text"),
        (["--zap-log-level", "ERROR"], "error", "text"),
        (["--zap-log-level=panic"], "error", "text"),
        (["--zap-log-level=3"], "debug", "text"),  # controller-runtime: an integer > 0 is a debug verbosity
        (["--zap-encoder=json"], "info", "json"),
        (["--zap-encoder=console"], "info", "text"),
        (["--zap-devel"], "debug", "text"),
        (["--zap-devel=false"], "info", "text"),
        (["--zap-devel", "--zap-log-level=info"], "info", "text"),
        (["--zap-log-level=debug", "--log-level=warning"], "warning", "text"),  # ours wins
    ],
)
def test_zap_flags_map_onto_the_log_settings(argv: list[str], level: str, fmt: str) -> None:
    settings, _ = serve(*argv)
    assert (settings.log.level, settings.log.format) == (level, fmt)


def test_zap_flags_win_over_the_environment() -> None:
    settings, _ = serve("--zap-log-level=debug", environ={"LOG_LEVEL": "error", "LOG_FORMAT": "json"})
    assert (settings.log.level, settings.log.format) == ("debug", "json")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--zap-log-level=loud", "--zap-log-level='loud': use debug, info, error, panic or an integer > 0"),
        ("--zap-log-level=0", "--zap-log-level='0'"),
        ("--zap-encoder=xml", "--zap-encoder='xml': use json or console"),
        ("--zap-stacktrace-level=debug", "--zap-stacktrace-level='debug': use info, error or panic"),
        ("--zap-time-encoding=unix", "--zap-time-encoding='unix'"),
        ("--zap-devel=maybe", "--zap-devel='maybe': must be true or false"),
    ],
)
def test_a_value_zap_would_refuse_is_refused_naming_the_flag(flag: str, message: str) -> None:
    with pytest.raises(config.SettingsError, match=re.escape(message)):
        serve(flag)


def test_kedifys_default_environment_is_honoured_or_accepted_with_a_note_each() -> None:
    settings, notes = serve(*ARGS_DEFAULT, environ=ENV_DEFAULT)
    listeners = settings.listeners
    assert (listeners.otlp_receiver_port, listeners.keda_external_scaler_port) == (4317, 4318)
    assert (listeners.rest_api_port, listeners.internal_metrics_port) == (9090, 8080)
    assert settings.keda.is_active_polling_interval_ms == 500
    assert settings.keda_tls.enabled is False and not settings.keda_tls.active
    assert (settings.store.retention_seconds, settings.log.level) == (120.0, "info")
    assert notes[0] == "kedify/otel-add-on logging flags mapped to --log-level=info"
    accepted = [n.split("=", 1)[0] for n in notes if "accepted without effect" in n]
    assert accepted == ["OTLP_CERTIFICATE_RELOAD_INTERVAL", "METRIC_STORE_LAZY_SERIES", "METRIC_STORE_LAZY_AGGREGATES"]
    assert any(n.startswith("--zap-stacktrace-level=error accepted") for n in notes)
    assert len(notes) == 5


def test_keda_tls_enabled_decides_tls_on_the_keda_port() -> None:
    certs = {"KEDA_TLS_CERT_FILE": "/etc/server-tls/tls.crt", "KEDA_TLS_KEY_FILE": "/etc/server-tls/tls.key"}
    off, notes = serve(environ={**certs, "KEDA_TLS_ENABLED": "false"})
    assert not off.keda_tls.active
    assert any(n.startswith("KEDA_TLS_ENABLED=false: the KEDA port serves plaintext gRPC") for n in notes)
    on, notes = serve(environ={**certs, "KEDA_TLS_ENABLED": "T"})
    assert on.keda_tls.active and not any("KEDA_TLS_ENABLED" in n for n in notes)
    assert serve(environ=certs)[0].keda_tls.active  # unset: a certificate turns it on, as before
    assert not serve(environ={**certs, "KEDA_TLS_ENABLED": ""})[0].keda_tls.enabled  # empty = unset
    with pytest.raises(
        config.SettingsError, match="KEDA_TLS_ENABLED=true needs KEDA_TLS_CERT_FILE and KEDA_TLS_KEY_FILE"
    ):
        serve(environ={"KEDA_TLS_ENABLED": "true"})


def test_accepted_variables_are_checked_as_kedify_reads_them() -> None:
    for env, bad in (
        ("OTLP_CERTIFICATE_RELOAD_INTERVAL", "5"),
        ("METRIC_STORE_LAZY_SERIES", "perhaps"),
        ("METRIC_STORE_LAZY_AGGREGATES", "2"),
    ):
        with pytest.raises(config.SettingsError, match=re.escape(f"{env}={bad!r}")):
            serve(environ={env: bad})
    _, notes = serve(
        environ={"NO_COLOR": "1", "NO_BANNER": "anything", "OTLP_CERTIFICATE_RELOAD_INTERVAL": "1h30m15.5s"}
    )
    assert [n.split("=", 1)[0] for n in notes] == ["OTLP_CERTIFICATE_RELOAD_INTERVAL", "NO_COLOR", "NO_BANNER"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("15s", 15.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("300ms", 0.3),
        ("0", 0.0),
        ("2h45m30.5s", 9930.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert configvalues.parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "1d", "1.5.2s", "five minutes"])
def test_go_durations_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Go duration"):
        configvalues.parse_go_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("t", True),
        ("T", True),
        ("TRUE", True),
        ("true", True),
        ("True", True),
        ("0", False),
        ("f", False),
        ("F", False),
        ("FALSE", False),
        ("false", False),
        ("False", False),
    ],
)
def test_go_boolean_spellings(text: str, expected: bool) -> None:
    assert configvalues.parse_bool(text) is expected
    assert config.load({}, {"METRIC_STORE_ERROR_IF_NOT_FOUND": text}).triggers.error_if_not_found is expected


def test_go_integer_literals_of_kedifys_integer_variables() -> None:
    s = config.load(
        {},
        {"METRIC_STORE_RETENTION_SECONDS": "0x78", "REST_API_PORT": "9_090", "IS_ACTIVE_POLLING_INTERVAL_MS": "0o764"},
    )
    assert (s.store.retention_seconds, s.listeners.rest_api_port, s.keda.is_active_polling_interval_ms) == (
        120.0,
        9090,
        500,
    )
