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

The groups are declared in :mod:`scaler.configgroups` (and importable from here, as they
always were). Precedence is flag > environment > default; an invalid value raises :class:`SettingsError`
naming the flag or variable. A group built in code (``StoreLimits(max_series=10)``) is a plain
validated value: it never reads the process environment by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource

from scaler.configgroups import (
    DEFAULT_RESOURCE_LABELS,
    Access,
    Group,
    HttpLimits,
    KedaStreams,
    KedaTLSFiles,
    Listeners,
    LogSettings,
    OtlpSettings,
    PeerSettings,
    PeerSource,
    Promotions,
    QuerySettings,
    SnapshotSettings,
    StoreLimits,
    TLSFiles,
    TriggerDefaults,
    parse_peers,
    parse_resource_labels,
)
from scaler.configvalues import parse_bool, parse_go_duration

# This module's API, and the groups and their value types declared in scaler.configgroups.
__all__ = [
    "ACCEPTED",
    "DEFAULT_RESOURCE_LABELS",
    "SETTINGS",
    "SETTING_BY_NAME",
    "Accepted",
    "Access",
    "Group",
    "HttpLimits",
    "KedaStreams",
    "KedaTLSFiles",
    "Listeners",
    "LogSettings",
    "OtlpSettings",
    "PeerSettings",
    "PeerSource",
    "Prefix",
    "Promotions",
    "QuerySettings",
    "Setting",
    "Settings",
    "SettingsError",
    "SnapshotSettings",
    "StoreLimits",
    "TLSFiles",
    "TriggerDefaults",
    "accepted_notes",
    "load",
    "markdown_table",
    "parse_peers",
    "parse_resource_labels",
    "slots",
]


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the flag or variable."""


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
