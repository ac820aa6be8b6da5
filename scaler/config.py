"""Settings: each one declared once, as a field of the group owned by the code that uses it.

A setting's declaration is its field: the type and constraints (the parser), the default, the
help text (``description``), and — only where it is not the field's name in capitals — the
environment variable (``validation_alias``). A group sits in :class:`Settings` under a slot whose
:class:`Prefix` (if any) is put before its fields' names, so one :class:`TLSFiles` class serves
three listeners. Everything else is derived from those declarations (:data:`SETTINGS`):

* the environment variable read: pydantic-settings' ``EnvSettingsSource`` over the mapping
  :func:`load` is given (the process environment in production, a dict in tests);
* the ``serve`` flag ``--<name>`` and its ``--help`` line (:func:`scaler.cli.add_setting_flags`);
* the README's configuration table (:func:`markdown_table`; a test keeps the README equal to it);
* ``GET /info``'s ``config`` (:meth:`Settings.public`, secrets shown as ``"<set>"``).

Precedence is flag > environment > default; an invalid value raises :class:`SettingsError`
naming the flag or variable. A group built in code (``StoreLimits(max_series=10)``) is a plain
validated value: it never reads the process environment by itself.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

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
    parse_bool,
    parse_go_duration,
)

DEFAULT_RESOURCE_LABELS = (
    "k8s.namespace.name=namespace,k8s.pod.name=pod,k8s.deployment.name=deployment,"
    "k8s.statefulset.name=statefulset,service.name=job,service.instance.id=instance,"
    "host.name=host.name,pod=host.name"
)
"""``host.name`` (else a resource attribute ``pod``) becomes the label ``host.name``, as in
kedify/otel-add-on; where several attributes map to one label, the first listed wins."""


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the flag or variable."""


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


@dataclass(frozen=True)
class Prefix:
    """Put before the names of a slot's fields: ``Annotated[TLSFiles, Prefix("keda_tls_", "KEDA")]``;
    ``label`` (if any) starts each of their help texts."""

    text: str
    label: str = ""


class Settings(BaseModel):
    """The effective configuration of ``keda-otel-scaler serve``: one group per owner."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    listeners: Listeners = Field(default_factory=Listeners)
    store: StoreLimits = Field(default_factory=StoreLimits)
    otlp: OtlpSettings = Field(default_factory=OtlpSettings)
    query: QuerySettings = Field(default_factory=QuerySettings)
    triggers: TriggerDefaults = Field(default_factory=TriggerDefaults)
    keda: KedaStreams = Field(default_factory=KedaStreams)
    http: Annotated[HttpLimits, Prefix("http_")] = Field(default_factory=HttpLimits)
    access: Access = Field(default_factory=Access)
    otlp_tls: Annotated[TLSFiles, Prefix("otlp_tls_", "OTLP gRPC")] = Field(default_factory=TLSFiles)
    keda_tls: Annotated[KedaTLSFiles, Prefix("keda_tls_", "KEDA gRPC")] = Field(default_factory=KedaTLSFiles)
    rest_tls: Annotated[TLSFiles, Prefix("rest_tls_", "HTTP")] = Field(default_factory=TLSFiles)
    snapshot: Annotated[SnapshotSettings, Prefix("snapshot_")] = Field(default_factory=SnapshotSettings)
    peer: PeerSettings = Field(default_factory=PeerSettings)
    log: Annotated[LogSettings, Prefix("log_")] = Field(default_factory=LogSettings)

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings from flat names (the flag names: ``Settings.of(max_series=10)``), validated."""
        return Settings().replace(**values)

    def replace(self, **values: Any) -> Settings:
        """A copy with some settings (by flat name) changed, validated."""
        updates: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            setting = SETTING_BY_NAME.get(name)
            if setting is None:
                raise TypeError(f"unknown setting {name!r}")
            updates.setdefault(setting.slot, {})[setting.field] = value
        groups = {slot: getattr(self, slot) for slot in type(self).model_fields}
        for slot, changed in updates.items():
            group = groups[slot]
            groups[slot] = type(group).model_validate({**dict(group), **changed})
        return Settings(**groups)

    def value(self, name: str) -> Any:
        """A setting by flat name (``settings.value("max_series")``), a secret as its text."""
        setting = SETTING_BY_NAME[name]
        value = getattr(getattr(self, setting.slot), setting.field)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def public(self) -> dict[str, Any]:
        """Every setting by flat name, secrets as ``"<set>"`` (for ``GET /info`` and the logs)."""
        out: dict[str, Any] = {}
        for s in SETTINGS:
            value = self.value(s.name)
            out[s.name] = ("<set>" if value else "") if isinstance(s.info.default, SecretStr) else value
        return out


@dataclass(frozen=True)
class Setting:
    """One setting as the flags, the help, the README and ``/info`` see it (derived)."""

    slot: str
    field: str
    name: str
    env: str
    info: FieldInfo
    label: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def help(self) -> str:
        text = self.info.description or ""
        return f"{self.label}: {text}" if self.label else text

    @property
    def default_text(self) -> str:
        default = self.info.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        if isinstance(default, bool):
            return str(default).lower()
        if isinstance(default, float):
            return f"{default:g}"
        if isinstance(default, str):
            return f"`{default}`" if default else "unset"
        return "unset" if default is None else str(default)


def slots() -> Iterator[tuple[str, type[Group], Prefix]]:
    """(slot, group class, prefix) of every group in :class:`Settings`."""
    for slot, info in Settings.model_fields.items():
        group = info.annotation
        assert isinstance(group, type) and issubclass(group, Group)
        yield slot, group, next((m for m in info.metadata if isinstance(m, Prefix)), Prefix(""))


def _settings() -> Iterator[Setting]:
    for slot, group, prefix in slots():
        for field, info in group.model_fields.items():
            alias = info.validation_alias
            name = prefix.text + field
            env = alias if isinstance(alias, str) and alias != field.upper() else name.upper()
            yield Setting(slot, field, name, env, info, prefix.label)


SETTINGS: tuple[Setting, ...] = tuple(_settings())
"""Every setting, in declaration order."""
SETTING_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


class _Environ(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, group: type[Group], environ: Mapping[str, str], prefix: str) -> None:
        self._environ = environ
        super().__init__(group, case_sensitive=True, env_prefix=prefix.upper())

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._environ)


def load(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Settings with precedence flag > env > default; raises SettingsError naming the culprit.

    ``flags`` maps flat names (``max_series``) to the flag's text, None where not given."""
    groups: dict[str, Group] = {}
    for slot, group, prefix in slots():
        mine = [s for s in SETTINGS if s.slot == slot]
        given = {s.field: value for s in mine if (value := flags.get(s.name)) is not None}
        field_of = {info.validation_alias or info.alias or field: field for field, info in group.model_fields.items()}
        from_env = {field_of.get(key, key): value for key, value in _Environ(group, environ, prefix.text)().items()}
        values = {**from_env, **given}
        try:
            built = group.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc, mine, given, environ)) from None
        problem = built.check()
        if problem:
            raise SettingsError(problem.format(**{s.field: _source(s, given) for s in mine}))
        groups[slot] = built
    for variable in ACCEPTED:
        variable.validate(environ)
    return Settings(**groups)


def _source(setting: Setting, given: Mapping[str, object]) -> str:
    return setting.flag if setting.field in given else setting.env


def _describe(exc: ValidationError, mine: list[Setting], given: Mapping[str, str], environ: Mapping[str, str]) -> str:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else ""
    setting = next((s for s in mine if key in (s.field, s.env, s.info.alias, s.info.validation_alias)), None)
    if setting is None:
        return str(error["msg"])
    raw = given.get(setting.field, environ.get(setting.env, ""))
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{_source(setting, given)}={raw!r}: {message}"


@dataclass(frozen=True)
class Accepted:
    """A kedify/otel-add-on variable that has no effect here: its value is checked as kedify
    reads it, and start-up logs one line saying how this scaler differs (:func:`accepted_notes`)."""

    env: str
    parse: Callable[[str], object]
    differs: str

    def validate(self, environ: Mapping[str, str]) -> None:
        raw = environ.get(self.env)
        if raw is not None:
            try:
                self.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{self.env}={raw!r}: {exc}") from None


ACCEPTED: tuple[Accepted, ...] = (
    Accepted(
        "OTLP_CERTIFICATE_RELOAD_INTERVAL",
        parse_go_duration,
        "certificates are re-read at the first handshake after their files change, with no interval",
    ),
    Accepted(
        "METRIC_STORE_LAZY_SERIES",
        parse_bool,
        "every series is stored from its first sample on (MAX_SERIES and the retention bound the store)",
    ),
    Accepted(
        "METRIC_STORE_LAZY_AGGREGATES", parse_bool, "aggregates are computed when a query asks for them, never kept"
    ),
    Accepted("NO_COLOR", str, "the logs never have colours (LOG_FORMAT=text|json)"),
    Accepted("NO_BANNER", str, "no banner is printed"),
)
"""kedify/otel-add-on's variables that this scaler accepts without using them."""


def accepted_notes(environ: Mapping[str, str]) -> list[str]:
    """One log line per :data:`ACCEPTED` variable that is set."""
    return [
        f"{a.env}={environ[a.env]!r} (kedify/otel-add-on) accepted without effect: {a.differs}"
        for a in ACCEPTED
        if a.env in environ
    ]


def markdown_table() -> str:
    """The README's configuration table (tests/unit/test_config.py keeps the README equal to it)."""
    lines = ["| env var | flag | default | what |", "|---|---|---|---|"]
    for s in SETTINGS:
        what = s.help.replace("|", "\\|")
        lines.append(f"| `{s.env}` | `{s.flag}` | {s.default_text} | {what} |")
    for a in ACCEPTED:
        what = a.differs.replace("|", "\\|")
        lines.append(f"| `{a.env}` | | unset | kedify/otel-add-on's; accepted without effect: {what} |")
    return "\n".join(lines) + "\n"
