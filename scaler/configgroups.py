"""The settings' declarations: one group per owner, each setting a field of its group.

A setting's declaration is its field: the type and constraints (the parser), the default, the
help text (``description``), and — only where it is not the field's name in capitals — the
environment variable (``validation_alias``). :mod:`scaler.config` puts the groups together in
:class:`scaler.config.Settings` and derives the flags, ``--help``, the README table and
``/info`` from these declarations; a group built in code (``StoreLimits(max_series=10)``) is a
plain validated value that never reads the process environment by itself.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from scaler.configvalues import (
    Count,
    GoSeconds,
    Milliseconds,
    Number,
    OptionalSwitch,
    Port,
    Seconds,
    SecondsOrOff,
    Switch,
    label_name_or_off,
    lower,
)

DEFAULT_RESOURCE_LABELS = (
    "k8s.namespace.name=namespace,k8s.pod.name=pod,k8s.deployment.name=deployment,"
    "k8s.statefulset.name=statefulset,service.name=job,service.instance.id=instance,"
    "host.name=host.name,pod=host.name"
)
"""``host.name`` (else a resource attribute ``pod``) becomes the label ``host.name``, as in
kedify/otel-add-on; where several attributes map to one label, the first listed wins."""


class Promotions(dict[str, str]):
    """Resource attribute → label, in priority order (where two attributes map to one label, the
    first wins), and the label that carries a hash of a resource's attributes when the promoted
    labels do not carry them all (None: never)."""

    def __init__(self, mapping: Mapping[str, str] | None = None, hash_label: str | None = None) -> None:
        super().__init__(mapping or {})
        self.hash_label = hash_label
        self.rank = {attribute: i for i, attribute in enumerate(self)}


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


@dataclass(frozen=True)
class PeerSource:
    """One entry of ``PEERS``: a base URL, or (``resolve``) a DNS name whose addresses are the peers."""

    scheme: str
    """``http`` or ``https``."""
    host: str
    port: int
    resolve: bool
    """``dns+http(s)://``: every address of ``host`` is a peer (a headless Service)."""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'dns+' if self.resolve else ''}{self.scheme}://{host}:{self.port}"


def parse_peers(text: str) -> list[PeerSource]:
    """Parse ``PEERS``: ``http(s)://HOST[:PORT]`` or ``dns+http(s)://NAME:PORT``, comma-separated."""
    out: list[PeerSource] = []
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        scheme, sep, rest = entry.partition("://")
        resolve = scheme.startswith("dns+")
        scheme = scheme.removeprefix("dns+")
        if not sep or scheme not in ("http", "https"):
            raise ValueError(f"peer {entry!r} is not http(s)://HOST[:PORT] or dns+http(s)://NAME:PORT")
        try:
            parsed = urllib.parse.urlsplit(f"{scheme}://{rest}")
            port = parsed.port
        except ValueError as exc:
            raise ValueError(f"peer {entry!r}: {exc}") from None
        if not parsed.hostname or parsed.path.strip("/") or parsed.query or parsed.fragment or parsed.username:
            raise ValueError(f"peer {entry!r} must be a base URL: scheme, host and port only")
        if port is None and resolve:
            raise ValueError(f"peer {entry!r} needs a port (dns+{scheme}://NAME:PORT)")
        out.append(PeerSource(scheme, parsed.hostname, port or (443 if scheme == "https" else 80), resolve))
    return out


def _peers(text: str) -> str:
    parse_peers(text)
    return text


def _check_resource_labels(text: str) -> str:
    """``RESOURCE_LABELS`` checked (:func:`parse_resource_labels` raises), kept as given."""
    parse_resource_labels(text)
    return text


class Group(BaseSettings):
    """Settings owned by one part of the service. Field names are the flag names (after the
    slot's prefix); the variable is the name in capitals unless ``validation_alias`` says otherwise."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        case_sensitive=True,
        validate_by_name=True,
        validate_by_alias=True,
        alias_generator=str.upper,
        env_prefix_target="all",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # only load() reads an environment: the one it is given

    def check(self) -> str | None:
        """A problem spanning several fields, naming them as ``{field}``; None when fine."""
        return None


class Listeners(Group):
    """Listeners: addresses, ports and the graceful stop."""

    listen_address: str = Field("0.0.0.0", description="address every listener binds to unless its own is set")
    otlp_receiver_address: str = Field("", description="OTLP gRPC bind address (default: `LISTEN_ADDRESS`)")
    keda_external_scaler_address: str = Field("", description="KEDA gRPC bind address (default: `LISTEN_ADDRESS`)")
    rest_api_address: str = Field("", description="HTTP bind address, e.g. `127.0.0.1` (default: `LISTEN_ADDRESS`)")
    otlp_receiver_port: Port = Field(
        4317, description="OTLP gRPC port (`0` = any free port; bound ports are logged and shown by `/info`)"
    )
    keda_external_scaler_port: Port = Field(4318, description="KEDA external scaler gRPC port")
    rest_api_port: Port = Field(9090, description="HTTP port: REST, Prometheus API, OTLP/HTTP, health, metrics, docs")
    internal_metrics_port: Port = Field(
        8080, description="plain-HTTP port serving only `/metrics` (kedify/otel-add-on's `internal-metrics` port)"
    )
    shutdown_grace_seconds: Seconds = Field(10.0, description="in-flight calls may finish this long after SIGTERM")

    @property
    def otlp_address(self) -> str:
        return self.otlp_receiver_address or self.listen_address

    @property
    def keda_address(self) -> str:
        return self.keda_external_scaler_address or self.listen_address

    @property
    def rest_address(self) -> str:
        return self.rest_api_address or self.listen_address


class StoreLimits(Group):
    """Store limits (INTERFACE §2)."""

    retention_seconds: GoSeconds = Field(
        120.0,
        validation_alias="METRIC_STORE_RETENTION_SECONDS",
        description="sample retention; the default (and longest) `window` of `operationOverTime`",
    )
    max_series: Count = Field(500_000, description="active series; new series past it are rejected")
    max_labels_per_series: Count = Field(64, description="label pairs per series after promotion")
    max_label_name_length: Count = Field(256, description="longest label name, in characters")
    max_label_value_length: Count = Field(2048, description="longest label value, in characters")
    max_future_skew_seconds: Seconds = Field(300.0, description="how far ahead of the server clock a sample may be")


class OtlpSettings(Group):
    """OTLP ingestion (gRPC and HTTP)."""

    resource_labels: Annotated[str, AfterValidator(_check_resource_labels)] = Field(
        DEFAULT_RESOURCE_LABELS,
        description="resource attributes promoted to labels, `attribute=label,…` (`-` disables; "
        "where two map to one label, the first listed wins)",
    )
    resource_hash_label: Annotated[str, AfterValidator(label_name_or_off)] = Field(
        "resource_hash",
        description="label carrying a hash of a resource's attributes when its promoted labels do not carry "
        "them all, so no two resources share a series (`-` disables)",
    )
    max_otlp_message_bytes: Count = Field(
        16 * 1024 * 1024, description="one OTLP request after decompression (gRPC and HTTP)"
    )

    @property
    def promotions(self) -> Promotions:
        hash_label = None if self.resource_hash_label in ("", "-") else self.resource_hash_label
        return Promotions(parse_resource_labels(self.resource_labels), hash_label)

    def check(self) -> str | None:
        if self.promotions.hash_label in self.promotions.values():
            return "{resource_hash_label} names a label that {resource_labels} promotes to"
        return None


class QuerySettings(Group):
    """PromQL evaluation, as Prometheus' flags of the same meaning (scaler.query)."""

    evaluation_interval_seconds: Seconds = Field(
        60.0, description="step of a PromQL subquery that names none (`x[5m:]`), as Prometheus' evaluation interval"
    )
    query_timeout_seconds: Seconds = Field(
        120.0, description="a PromQL query running longer than this fails (Prometheus' `query.timeout`)"
    )
    query_max_samples: Count = Field(
        50_000_000, description="samples one PromQL query may hold (Prometheus' `query.max-samples`)"
    )


class TriggerDefaults(Group):
    """What a trigger answers when its query finds nothing (each trigger may override)."""

    value_if_not_found: Number = Field(
        0.0, validation_alias="METRIC_STORE_VALUE_IF_NOT_FOUND", description="value KEDA gets when nothing matches"
    )
    error_if_not_found: Switch = Field(
        False,
        validation_alias="METRIC_STORE_ERROR_IF_NOT_FOUND",
        description="answer gRPC `NOT_FOUND` instead, so KEDA `fallback` acts",
    )
    warmup_seconds: SecondsOrOff = Field(
        60.0, description="after start, a trigger without data answers `UNAVAILABLE`, not 'not found' (0 = off)"
    )


class HttpLimits(Group):
    """Bounds of the HTTP listener (scaler.httpserver)."""

    header_timeout_seconds: Seconds = Field(
        10.0, description="a connection must send its request head within this (408 + close)"
    )
    body_timeout_seconds: Seconds = Field(30.0, description="a request body that stalls this long gets 408 + close")
    max_header_bytes: Count = Field(65536, description="request line + headers; larger gets 431 + close")
    max_connections: Count = Field(1024, description="concurrent HTTP connections; past it requests get 503")


class Access(Group):
    """Secrets that open privileged endpoints (shown as ``"<set>"`` in ``/info``)."""

    admin_token: SecretStr = Field(
        SecretStr(""), description="enables `POST /memstore/reset` with `Authorization: Bearer <token>`"
    )


class TLSFiles(Group):
    """Certificate, key and optional client CA (the CA turns on mTLS) for one listener."""

    cert_file: str = Field("", description="certificate (PEM); enables TLS")
    key_file: str = Field("", description="private key (PEM)")
    ca_file: str = Field("", description="client CA (PEM); enables mTLS")

    @property
    def active(self) -> bool:
        """TLS is on for this listener (a certificate is given)."""
        return bool(self.cert_file)

    def check(self) -> str | None:
        if bool(self.cert_file) != bool(self.key_file):
            return "{cert_file} and {key_file} go together"
        if self.ca_file and not self.cert_file:
            return "{ca_file} needs {cert_file}"
        return None


class KedaTLSFiles(TLSFiles):
    """:class:`TLSFiles` of the KEDA listener, with kedify/otel-add-on's switch: its chart fills
    the certificate variables from the OTLP certificate and sets ``KEDA_TLS_ENABLED=false``
    unless KEDA's side is configured for TLS."""

    enabled: OptionalSwitch = Field(
        None,
        description="when set, decides TLS on the KEDA port whatever the files say (unset: a certificate turns it on)",
    )

    @property
    def active(self) -> bool:
        return bool(self.cert_file) if self.enabled is None else self.enabled

    def check(self) -> str | None:
        if self.enabled and not (self.cert_file and self.key_file):
            return "{enabled}=true needs {cert_file} and {key_file}"
        return super().check()


class KedaStreams(Group):
    """KEDA's StreamIsActive (scaler.keda, scaler.streams)."""

    is_active_polling_interval_ms: Milliseconds = Field(
        None,
        description="when set, StreamIsActive also repeats the state at least this often (kedify/otel-add-on's "
        "cadence); unset: it sends only when the state changes",
    )
    max_streams: Count = Field(
        20_000, description="open StreamIsActive streams; one more is refused with `RESOURCE_EXHAUSTED`"
    )


class SnapshotSettings(Group):
    """Warm restarts (scaler.persistence)."""

    path: str = Field("", description="store snapshot: written on SIGTERM, loaded on start (unset = none)")
    interval_seconds: SecondsOrOff = Field(0.0, description="also write the snapshot this often (0 = on SIGTERM only)")


class PeerSettings(Group):
    """High availability: warm start from a peer replica (scaler.peers) and serving ours (`GET /snapshot`)."""

    peers: Annotated[str, AfterValidator(_peers)] = Field(
        "",
        description="replicas to fetch a snapshot from when starting empty: base URLs (`http://host:9090`, "
        "comma-separated) or `dns+http://NAME:PORT` of a headless Service (unset = none)",
    )
    peer_token: SecretStr = Field(
        SecretStr(""), description="bearer token for `GET /snapshot`, sent to peers and required from them"
    )
    peer_ca_file: str = Field(
        "", description="CA (PEM) that verifies `https` peers (default: `REST_TLS_CA_FILE`, else the system's)"
    )
    peer_snapshot_max_bytes: Count = Field(
        256 * 1024 * 1024, description="largest peer snapshot accepted; a larger one is refused"
    )
    peer_timeout_seconds: Seconds = Field(
        20.0, description="the warm start from peers gives up after this long (then the warm-up applies)"
    )

    @property
    def sources(self) -> list[PeerSource]:
        return parse_peers(self.peers)


class LogSettings(Group):
    """Logging (scaler.logs)."""

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(lower)] = Field(
        "info", description="`debug`, `info`, `warning` or `error`"
    )
    format: Annotated[Literal["text", "json"], BeforeValidator(lower)] = Field(
        "text", description="`text` or `json` (one line per event)"
    )
