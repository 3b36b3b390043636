"""Agent configuration: defaults, then the Go agent's environment variables, then CLI flags.

`load_config()` is the only entry point. It reads the environment variables of the Go agent
"Alaz" with the same names, defaults and boolean parsing (see `reference/alaz-spec.md` §1.16), adds
a few of our own (prefixed `ALAZ_`), applies the CLI overrides on top, and validates everything
with pydantic. Any invalid value raises `ConfigError` with one line that names the variable (or the
flag) and the problem; pydantic errors never escape.

Where the Go agent silently turns an unparsable boolean into false (`TRACING_ENABLED=yes`), we do
the same so existing manifests behave identically, and record a line in `AgentConfig.warnings` for
the app to log.

    AgentConfig
    ├── backend    BACKEND_HOST, MONITORING_ID, NODE_NAME, TEST_MODE, ALAZ_VERSION
    ├── features   TRACING_ENABLED, METRICS_ENABLED, LOGS_ENABLED, SEND_ALIVE_TCP_CONNECTIONS
    ├── export     BATCH_SIZE, ALAZ_EXPORT_QUEUE_ROWS, _QUEUE_BYTES, _MAX_IN_FLIGHT, _FLUSH_MS
    ├── k8s        K8S_COLLECTOR_ENABLED, IN_CLUSTER, KUBECONFIG, EXCLUDE_NAMESPACES,
    │              CRI_RUNTIME_ENDPOINT
    ├── log        LOG_LEVEL, DISABLE_LOGS, LOG_CONTEXT_KEY
    ├── logstream  LOG_BACKEND, LOG_BACKEND_SERVER_NAME, LOG_BACKEND_TLS,
    │              LOG_BACKEND_MAX_CONNECTION (read for completeness; the feature is off in Go too)
    ├── capture    ALAZ_CAPTURE_BYTES, ALAZ_RING_BYTES, ALAZ_POLL_INTERVAL_MS
    ├── output     ALAZ_OUTPUT       (JSON lines path; "-" = stdout)
    └── ready_file ALAZ_READY_FILE
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alaz import __version__
from alaz.errors import ConfigError

__all__ = [
    "AgentConfig",
    "BackendConfig",
    "CaptureConfig",
    "ExportConfig",
    "FeaturesConfig",
    "KubernetesConfig",
    "LogConfig",
    "LogStreamConfig",
    "go_parse_bool",
    "load_config",
    "override_names",
]

MiB = 1 << 20

# Go's strconv.ParseBool vocabulary.
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# zerolog numeric levels -> the level names alaz.log understands.
_ZEROLOG_LEVELS = {
    -1: "debug",  # trace
    0: "debug",
    1: "info",
    2: "warn",
    3: "error",
    4: "error",  # fatal
    5: "error",  # panic
}
_LEVEL_NAMES = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "fatal": "error",
    "panic": "error",
}


def go_parse_bool(text: str) -> bool | None:
    """Go's `strconv.ParseBool`: True/False, or None when `text` is not one of its spellings."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    return None


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackendConfig(_Model):
    """Where and as whom rows are shipped (the Anteon backend contract)."""

    host: str = ""  # BACKEND_HOST, concatenated verbatim with the endpoint paths
    monitoring_id: str = ""
    node_name: str = ""
    alaz_version: str = f"v{__version__}"
    test_mode: bool = False  # TEST_MODE: skip the required-variable checks, as in Go

    @field_validator("host")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class FeaturesConfig(_Model):
    """Which collectors run."""

    tracing: bool = False
    metrics: bool = False
    logs: bool = False  # read like Go reads it; the Go agent forces it off and so do we
    send_alive_tcp_connections: bool = False


class ExportConfig(_Model):
    """The shared batcher and the sinks' bounds."""

    batch_size: int = Field(default=1000, ge=1, le=1_000_000)
    flush_interval_ms: int = Field(default=1000, ge=1, le=60_000)
    queue_rows: int = Field(default=100_000, ge=1)
    queue_bytes: int = Field(default=64 * MiB, ge=4096)
    max_in_flight: int = Field(default=4, ge=1, le=64)


class KubernetesConfig(_Model):
    """Kubernetes and container-runtime access, and namespace scoping."""

    enabled: bool = True
    in_cluster: bool = True
    kubeconfig: str | None = None
    exclude_namespaces: re.Pattern[str] | None = None
    cri_runtime_endpoint: str | None = None

    @field_validator("exclude_namespaces", mode="before")
    @classmethod
    def _compile(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @property
    def namespace_filter(self) -> str:
        """The EXCLUDE_NAMESPACES text as given ("" when unset), echoed in the health check."""
        return self.exclude_namespaces.pattern if self.exclude_namespaces else ""


class LogConfig(_Model):
    """The agent's own logging."""

    level: str = "info"  # one of debug, info, warn, error
    disabled: bool = False
    context_key: str | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        return _parse_log_level(value)


class LogStreamConfig(_Model):
    """The Go agent's log streamer settings; that feature is disabled there and absent here."""

    backend: str = "log-alaz.getanteon.com:443"
    server_name: str = "log-alaz.getanteon.com"
    tls: bool = True
    max_connection: int = Field(default=30, ge=1)


class CaptureConfig(_Model):
    """Kernel capture knobs."""

    capture_bytes: int = Field(default=1024, ge=1, le=16384)
    ring_bytes: int = Field(default=16 * MiB, ge=MiB)
    poll_interval_ms: int = Field(default=20, ge=1, le=1000)

    @field_validator("ring_bytes")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two")
        return value


class AgentConfig(_Model):
    """Everything the agent reads at start-up; immutable once loaded."""

    backend: BackendConfig = BackendConfig()
    features: FeaturesConfig = FeaturesConfig()
    export: ExportConfig = ExportConfig()
    k8s: KubernetesConfig = KubernetesConfig()
    log: LogConfig = LogConfig()
    logstream: LogStreamConfig = LogStreamConfig()
    capture: CaptureConfig = CaptureConfig()
    output: str | None = None
    ready_file: str | None = None
    # /healthz, /readyz and /metrics (the Go agent's port, 8181); -1 turns the server off.
    health_port: int = Field(8181, ge=-1, le=65535)
    warnings: tuple[str, ...] = ()

    @property
    def backend_enabled(self) -> bool:
        """True when BACKEND_HOST is set: the anteon sink ships to it."""
        return bool(self.backend.host)


def _parse_log_level(value: object) -> object:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    try:
        number = int(text)
    except ValueError:
        if text in _LEVEL_NAMES:
            return _LEVEL_NAMES[text]
        raise ValueError("expected a zerolog level -1..5 or a level name") from None
    if number not in _ZEROLOG_LEVELS:
        raise ValueError("expected a zerolog level -1..5 or a level name")
    return _ZEROLOG_LEVELS[number]


# --- where each setting comes from -------------------------------------------------------------

_Parse = Callable[[str, str, list[str]], object]


def _go_bool_default(default: bool) -> _Parse:
    """Go agent semantics: an unparsable value means `default`, with a warning."""

    def parse(name: str, text: str, warnings: list[str]) -> object:
        value = go_parse_bool(text)
        if value is None:
            warnings.append(f"ignore {name}={text!r}: not a Go boolean, using {default}")
            return default
        return value

    return parse


def _not_false(name: str, text: str, warnings: list[str]) -> object:
    """K8S_COLLECTOR_ENABLED: on unless the value parses as false."""
    return go_parse_bool(text) is not False


def _not_literal_false(name: str, text: str, warnings: list[str]) -> object:
    """IN_CLUSTER: in-cluster unless the value is exactly "false"."""
    return text != "false"


def _text(name: str, text: str, warnings: list[str]) -> object:
    return text


def _optional_text(name: str, text: str, warnings: list[str]) -> object:
    return text or None


@dataclass(frozen=True)
class _Setting:
    key: str  # the override (CLI flag) name
    section: str | None  # sub-model, or None for a top-level field
    field: str
    env: str | None
    parse: _Parse = _text

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


_SETTINGS: tuple[_Setting, ...] = (
    _Setting("backend_host", "backend", "host", "BACKEND_HOST"),
    _Setting("monitoring_id", "backend", "monitoring_id", "MONITORING_ID"),
    _Setting("node_name", "backend", "node_name", "NODE_NAME"),
    _Setting("alaz_version", "backend", "alaz_version", "ALAZ_VERSION"),
    _Setting("test_mode", "backend", "test_mode", "TEST_MODE", _go_bool_default(False)),
    _Setting("tracing_enabled", "features", "tracing", "TRACING_ENABLED", _go_bool_default(False)),
    _Setting("metrics_enabled", "features", "metrics", "METRICS_ENABLED", _go_bool_default(False)),
    _Setting("logs_enabled", "features", "logs", "LOGS_ENABLED", _go_bool_default(False)),
    _Setting(
        "send_alive_tcp_connections",
        "features",
        "send_alive_tcp_connections",
        "SEND_ALIVE_TCP_CONNECTIONS",
        _go_bool_default(False),
    ),
    _Setting("batch_size", "export", "batch_size", "BATCH_SIZE"),
    _Setting("flush_interval_ms", "export", "flush_interval_ms", "ALAZ_EXPORT_FLUSH_MS"),
    _Setting("queue_rows", "export", "queue_rows", "ALAZ_EXPORT_QUEUE_ROWS"),
    _Setting("queue_bytes", "export", "queue_bytes", "ALAZ_EXPORT_QUEUE_BYTES"),
    _Setting("max_in_flight", "export", "max_in_flight", "ALAZ_EXPORT_MAX_IN_FLIGHT"),
    _Setting("k8s_collector_enabled", "k8s", "enabled", "K8S_COLLECTOR_ENABLED", _not_false),
    _Setting("in_cluster", "k8s", "in_cluster", "IN_CLUSTER", _not_literal_false),
    _Setting("kubeconfig", "k8s", "kubeconfig", "KUBECONFIG", _optional_text),
    _Setting(
        "exclude_namespaces", "k8s", "exclude_namespaces", "EXCLUDE_NAMESPACES", _optional_text
    ),
    _Setting(
        "cri_runtime_endpoint",
        "k8s",
        "cri_runtime_endpoint",
        "CRI_RUNTIME_ENDPOINT",
        _optional_text,
    ),
    _Setting("log_level", "log", "level", "LOG_LEVEL"),
    _Setting("disable_logs", "log", "disabled", "DISABLE_LOGS", _go_bool_default(False)),
    _Setting("log_context_key", "log", "context_key", "LOG_CONTEXT_KEY", _optional_text),
    _Setting("log_backend", "logstream", "backend", "LOG_BACKEND"),
    _Setting("log_backend_server_name", "logstream", "server_name", "LOG_BACKEND_SERVER_NAME"),
    _Setting("log_backend_tls", "logstream", "tls", "LOG_BACKEND_TLS", _go_bool_default(True)),
    _Setting(
        "log_backend_max_connection", "logstream", "max_connection", "LOG_BACKEND_MAX_CONNECTION"
    ),
    _Setting("capture_bytes", "capture", "capture_bytes", "ALAZ_CAPTURE_BYTES"),
    _Setting("ring_bytes", "capture", "ring_bytes", "ALAZ_RING_BYTES"),
    _Setting("poll_interval_ms", "capture", "poll_interval_ms", "ALAZ_POLL_INTERVAL_MS"),
    _Setting("output", None, "output", "ALAZ_OUTPUT", _optional_text),
    _Setting("ready_file", None, "ready_file", "ALAZ_READY_FILE", _optional_text),
    _Setting("health_port", None, "health_port", "ALAZ_HEALTH_PORT"),
)
_BY_KEY = {s.key: s for s in _SETTINGS}
_BY_LOC: dict[tuple[str, ...], _Setting] = {
    (s.section, s.field) if s.section else (s.field,): s for s in _SETTINGS
}


def override_names() -> tuple[str, ...]:
    """The keyword names `load_config` accepts as overrides (one per setting)."""
    return tuple(_BY_KEY)


def load_config(environ: Mapping[str, str] | None = None, **overrides: Any) -> AgentConfig:
    """Build the configuration from `environ` (default `os.environ`) and CLI `overrides`.

    Overrides are keyed by `override_names()` (e.g. `output="-"`, `capture_bytes=4096`); a value
    of None means "flag not given" and is skipped. Raises `ConfigError` on any invalid value.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    warnings: list[str] = []
    for setting in _SETTINGS:
        text = env.get(setting.env) if setting.env else None
        if text is not None and text != "":
            _place(raw, setting, setting.parse(setting.env or "", text, warnings))
            sources[_loc(setting)] = f"{setting.env}={text!r}"
    for key, value in overrides.items():
        if value is None:
            continue
        known = _BY_KEY.get(key)
        if known is None:
            raise ConfigError(f"unknown setting {key!r}")
        _place(raw, known, _override_value(known, value))
        sources[_loc(known)] = f"{known.flag}={value!r}"
    raw["warnings"] = tuple(warnings)
    try:
        config = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None
    _check_required(config)
    return config


def _loc(setting: _Setting) -> tuple[str, ...]:
    return (setting.section, setting.field) if setting.section else (setting.field,)


def _place(raw: dict[str, Any], setting: _Setting, value: object) -> None:
    if setting.section is None:
        raw[setting.field] = value
    else:
        raw.setdefault(setting.section, {})[setting.field] = value


def _override_value(setting: _Setting, value: object) -> object:
    """A flag given as text is parsed like its variable, but an invalid boolean is an error."""
    if not isinstance(value, str):
        return value
    default = _field_default(setting)
    if isinstance(default, bool):
        parsed = go_parse_bool(value)
        if parsed is None:
            raise ConfigError(f"invalid {setting.flag}={value!r}: expected true or false")
        return parsed
    return setting.parse(setting.flag, value, [])


def _field_default(setting: _Setting) -> object:
    if setting.section is None:
        return AgentConfig.model_fields[setting.field].default
    section = AgentConfig.model_fields[setting.section].default
    return getattr(section, setting.field)


def _describe(exc: ValidationError, sources: Mapping[tuple[str, ...], str]) -> str:
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    setting = _BY_LOC.get(loc)
    name = sources.get(loc) or ((setting.env or setting.flag) if setting else ".".join(loc))
    return f"invalid {name}: {_problem(error)}"


def _problem(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "int_parsing":
        return "not an integer"
    if kind in ("greater_than_equal", "less_than_equal"):
        op = ">=" if kind == "greater_than_equal" else "<="
        return f"must be {op} {ctx.get('ge', ctx.get('le'))}"
    message = str(error["msg"])
    return message[:1].lower() + message[1:]


def _check_required(config: AgentConfig) -> None:
    backend = config.backend
    if not backend.host or backend.test_mode:
        return
    for env, value in (("MONITORING_ID", backend.monitoring_id), ("NODE_NAME", backend.node_name)):
        if not value:
            raise ConfigError(f"missing {env}: required when BACKEND_HOST is set")
