"""Settings: one typed object, environment names in one place, flag > env > default.

Every field is declared once in :data:`FIELDS` with its environment variable (the Go
reference's names where it has one), its type, default and help text. The CLI builds its
``serve`` flags from the same table, so ``serve --help`` always lists every setting.
Invalid values fail fast with an error that names the variable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from scaler.model import Limits

DEFAULT_RESOURCE_LABELS = (
    "k8s.namespace.name=namespace,k8s.pod.name=pod,k8s.deployment.name=deployment,"
    "k8s.statefulset.name=statefulset,service.name=job,service.instance.id=instance"
)


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the variable."""


@dataclass(frozen=True)
class TLSFiles:
    """Certificate, key and optional client CA (the CA turns on mTLS) for one listener."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@dataclass(frozen=True)
class Settings:
    """The effective configuration of ``keda-otel-scaler serve``."""

    listen_address: str = "0.0.0.0"
    """Address every listener binds to unless its own address is set."""
    otlp_receiver_address: str = ""
    """Address of the OTLP gRPC listener (default: listen_address)."""
    keda_external_scaler_address: str = ""
    """Address of the KEDA gRPC listener (default: listen_address)."""
    rest_api_address: str = ""
    """Address of the HTTP listener (default: listen_address)."""
    otlp_receiver_port: int = 4317
    """OTLP/gRPC MetricsService port (0 = pick a free port)."""
    keda_external_scaler_port: int = 4318
    """KEDA ExternalScaler gRPC port (0 = pick a free port)."""
    rest_api_port: int = 9090
    """HTTP port: REST, Prometheus API, OTLP/HTTP, health, metrics (0 = pick a free port)."""
    resource_labels: str = DEFAULT_RESOURCE_LABELS
    """Resource attributes promoted to labels, as ``attribute=label,...``."""
    retention_seconds: float = 120.0
    """How long samples are kept; the default window of ``operationOverTime``."""
    value_if_not_found: float = 0.0
    """Value KEDA gets when a query matches no series (unless errIfNotFound)."""
    error_if_not_found: bool = False
    """Answer gRPC NOT_FOUND when a query matches no series (lets KEDA ``fallback`` act)."""
    max_series: int = 500_000
    """Active series in the store; a new series past it is rejected."""
    max_labels_per_series: int = 64
    """Label pairs on one series (after promotion)."""
    max_label_name_length: int = 256
    """Longest accepted label name, in characters."""
    max_label_value_length: int = 2048
    """Longest accepted label value, in characters."""
    max_otlp_message_bytes: int = 16 * 1024 * 1024
    """Largest OTLP request (gRPC or HTTP), measured after decompression."""
    max_future_skew_seconds: float = 300.0
    """How far ahead of the server clock a sample may be."""
    evaluation_interval_seconds: float = 60.0
    """Step of a PromQL subquery that names none (``x[5m:]``), as Prometheus' evaluation interval."""
    query_timeout_seconds: float = 120.0
    """A PromQL query running longer than this fails (Prometheus' ``query.timeout``)."""
    query_max_samples: int = 50_000_000
    """A PromQL query may hold at most this many samples (Prometheus' ``query.max-samples``)."""
    admin_token: str = ""
    """Bearer token that enables ``POST /memstore/reset`` (disabled when empty)."""
    otlp_tls_cert_file: str = ""
    otlp_tls_key_file: str = ""
    otlp_tls_ca_file: str = ""
    keda_tls_cert_file: str = ""
    keda_tls_key_file: str = ""
    keda_tls_ca_file: str = ""
    rest_tls_cert_file: str = ""
    rest_tls_key_file: str = ""
    rest_tls_ca_file: str = ""
    shutdown_grace_seconds: float = 10.0
    """How long in-flight calls may finish after SIGTERM."""
    snapshot_path: str = ""
    """File the store is saved to on shutdown and loaded from on start ("" = no snapshot)."""
    snapshot_interval_seconds: float = 0.0
    """Also save the snapshot this often while running (0 = only on shutdown)."""
    warmup_seconds: float = 60.0
    """After start, a trigger whose query finds no data answers UNAVAILABLE, not "not found"."""
    http_header_timeout_seconds: float = 10.0
    """Close an HTTP connection whose request headers take longer than this."""
    http_body_timeout_seconds: float = 30.0
    """Answer 408 and close when a request body stalls for this long."""
    http_max_header_bytes: int = 65536
    """Largest request line + headers; larger requests get 431."""
    http_max_connections: int = 1024
    """Concurrent HTTP connections; past it requests get 503."""
    log_level: str = "info"
    """debug, info, warning or error."""
    log_format: str = "text"
    """text or json."""

    @property
    def limits(self) -> Limits:
        return Limits(
            retention_seconds=self.retention_seconds,
            max_series=self.max_series,
            max_labels_per_series=self.max_labels_per_series,
            max_label_name_length=self.max_label_name_length,
            max_label_value_length=self.max_label_value_length,
            max_future_skew_seconds=self.max_future_skew_seconds,
        )

    @property
    def otlp_address(self) -> str:
        return self.otlp_receiver_address or self.listen_address

    @property
    def keda_address(self) -> str:
        return self.keda_external_scaler_address or self.listen_address

    @property
    def rest_address(self) -> str:
        return self.rest_api_address or self.listen_address

    @property
    def promotions(self) -> dict[str, str]:
        return parse_resource_labels(self.resource_labels)

    @property
    def otlp_tls(self) -> TLSFiles:
        return TLSFiles(self.otlp_tls_cert_file, self.otlp_tls_key_file, self.otlp_tls_ca_file)

    @property
    def keda_tls(self) -> TLSFiles:
        return TLSFiles(self.keda_tls_cert_file, self.keda_tls_key_file, self.keda_tls_ca_file)

    @property
    def rest_tls(self) -> TLSFiles:
        return TLSFiles(self.rest_tls_cert_file, self.rest_tls_key_file, self.rest_tls_ca_file)

    def public(self) -> dict[str, Any]:
        """The configuration without secrets (for ``GET /info`` and the start-up log)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "admin_token":
                value = "<set>" if value else ""
            out[f.name] = value
        return out


@dataclass(frozen=True)
class Field:
    name: str
    env: str
    parse: Callable[[str], Any]
    help: str


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be between 0 and 65535")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise ValueError("must be a non-negative number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise ValueError("must be a positive number")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def parse_resource_labels(text: str) -> dict[str, str]:
    """Parse ``attr=label,attr2=label2`` into a mapping (``-`` or empty disables promotion)."""
    out: dict[str, str] = {}
    if text.strip() in ("", "-"):
        return out
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        attribute, sep, label = part.partition("=")
        if not sep or not attribute.strip() or not label.strip():
            raise ValueError(f"entry {part!r} is not of the form attribute=label")
        out[attribute.strip()] = label.strip()
    return out


def _resource_labels(text: str) -> str:
    parse_resource_labels(text)
    return text


def _str(text: str) -> str:
    return text


FIELDS: tuple[Field, ...] = (
    Field("listen_address", "LISTEN_ADDRESS", _str, "address every listener binds to"),
    Field("otlp_receiver_address", "OTLP_RECEIVER_ADDRESS", _str, "OTLP gRPC address (default: listen address)"),
    Field(
        "keda_external_scaler_address",
        "KEDA_EXTERNAL_SCALER_ADDRESS",
        _str,
        "KEDA gRPC address (default: listen address)",
    ),
    Field("rest_api_address", "REST_API_ADDRESS", _str, "HTTP address (default: listen address)"),
    Field("otlp_receiver_port", "OTLP_RECEIVER_PORT", _port, "OTLP gRPC port (0 = any free)"),
    Field("keda_external_scaler_port", "KEDA_EXTERNAL_SCALER_PORT", _port, "KEDA gRPC port"),
    Field("rest_api_port", "REST_API_PORT", _port, "HTTP port (REST, Prometheus API, OTLP/HTTP)"),
    Field("resource_labels", "RESOURCE_LABELS", _resource_labels, "promoted resource attributes"),
    Field("retention_seconds", "METRIC_STORE_RETENTION_SECONDS", _positive_float, "sample retention"),
    Field(
        "value_if_not_found",
        "METRIC_STORE_VALUE_IF_NOT_FOUND",
        _finite_float,
        "value when a query matches nothing",
    ),
    Field(
        "error_if_not_found",
        "METRIC_STORE_ERROR_IF_NOT_FOUND",
        parse_bool,
        "NOT_FOUND when a query matches nothing",
    ),
    Field("max_series", "MAX_SERIES", _positive_int, "max active series"),
    Field("max_labels_per_series", "MAX_LABELS_PER_SERIES", _positive_int, "max labels per series"),
    Field("max_label_name_length", "MAX_LABEL_NAME_LENGTH", _positive_int, "max label name length"),
    Field("max_label_value_length", "MAX_LABEL_VALUE_LENGTH", _positive_int, "max label value length"),
    Field(
        "max_otlp_message_bytes",
        "MAX_OTLP_MESSAGE_BYTES",
        _positive_int,
        "max OTLP request size after decompression",
    ),
    Field(
        "max_future_skew_seconds",
        "MAX_FUTURE_SKEW_SECONDS",
        _positive_float,
        "max sample time ahead of now",
    ),
    Field(
        "evaluation_interval_seconds",
        "EVALUATION_INTERVAL_SECONDS",
        _positive_float,
        "default PromQL subquery step",
    ),
    Field("query_timeout_seconds", "QUERY_TIMEOUT_SECONDS", _positive_float, "PromQL query timeout"),
    Field("query_max_samples", "QUERY_MAX_SAMPLES", _positive_int, "max samples one PromQL query may hold"),
    Field("admin_token", "ADMIN_TOKEN", _str, "bearer token enabling /memstore/reset"),
    Field("otlp_tls_cert_file", "OTLP_TLS_CERT_FILE", _str, "OTLP listener certificate"),
    Field("otlp_tls_key_file", "OTLP_TLS_KEY_FILE", _str, "OTLP listener key"),
    Field("otlp_tls_ca_file", "OTLP_TLS_CA_FILE", _str, "OTLP client CA (enables mTLS)"),
    Field("keda_tls_cert_file", "KEDA_TLS_CERT_FILE", _str, "KEDA listener certificate"),
    Field("keda_tls_key_file", "KEDA_TLS_KEY_FILE", _str, "KEDA listener key"),
    Field("keda_tls_ca_file", "KEDA_TLS_CA_FILE", _str, "KEDA client CA (enables mTLS)"),
    Field("rest_tls_cert_file", "REST_TLS_CERT_FILE", _str, "HTTP listener certificate"),
    Field("rest_tls_key_file", "REST_TLS_KEY_FILE", _str, "HTTP listener key"),
    Field("rest_tls_ca_file", "REST_TLS_CA_FILE", _str, "HTTP client CA (enables mTLS)"),
    Field(
        "shutdown_grace_seconds",
        "SHUTDOWN_GRACE_SECONDS",
        _positive_float,
        "grace period for in-flight calls on SIGTERM",
    ),
    Field("snapshot_path", "SNAPSHOT_PATH", _str, "store snapshot file, saved on SIGTERM, loaded on start"),
    Field(
        "snapshot_interval_seconds",
        "SNAPSHOT_INTERVAL_SECONDS",
        _non_negative_float,
        "also save the snapshot this often (0 = on shutdown only)",
    ),
    Field(
        "warmup_seconds",
        "WARMUP_SECONDS",
        _non_negative_float,
        "after start, no data yet -> UNAVAILABLE instead of not found (0 = off)",
    ),
    Field(
        "http_header_timeout_seconds",
        "HTTP_HEADER_TIMEOUT_SECONDS",
        _positive_float,
        "close HTTP connections whose headers take longer",
    ),
    Field(
        "http_body_timeout_seconds",
        "HTTP_BODY_TIMEOUT_SECONDS",
        _positive_float,
        "408 when a request body stalls this long",
    ),
    Field("http_max_header_bytes", "HTTP_MAX_HEADER_BYTES", _positive_int, "largest request head (431 past it)"),
    Field("http_max_connections", "HTTP_MAX_CONNECTIONS", _positive_int, "concurrent HTTP connections (503 past it)"),
    Field("log_level", "LOG_LEVEL", _choice("debug", "info", "warning", "error"), "log level"),
    Field("log_format", "LOG_FORMAT", _choice("text", "json"), "log format"),
)


def load(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Build Settings with precedence flag > env > default; raise SettingsError on bad input."""
    values: dict[str, Any] = {}
    for f in FIELDS:
        raw = flags.get(f.name)
        source = f"--{f.name.replace('_', '-')}"
        if raw is None:
            raw = environ.get(f.env)
            source = f.env
        if raw is None:
            continue
        try:
            values[f.name] = f.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{source}={raw!r}: {exc}") from None
    settings = Settings(**values)
    _check_tls(settings)
    return settings


def _check_tls(settings: Settings) -> None:
    for prefix, tls in (
        ("OTLP", settings.otlp_tls),
        ("KEDA", settings.keda_tls),
        ("REST", settings.rest_tls),
    ):
        if bool(tls.cert_file) != bool(tls.key_file):
            raise SettingsError(f"{prefix}_TLS_CERT_FILE and {prefix}_TLS_KEY_FILE go together")
        if tls.ca_file and not tls.cert_file:
            raise SettingsError(f"{prefix}_TLS_CA_FILE needs {prefix}_TLS_CERT_FILE")
