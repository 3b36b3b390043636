"""Configuration: the Go agent's variables, defaults and bool parsing; flags win; clear errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from alaz.config import AgentConfig, go_parse_bool, load_config, override_names
from alaz.errors import ConfigError

BACKEND = {"BACKEND_HOST": "http://backend/api", "MONITORING_ID": "m-1", "NODE_NAME": "node-1"}


def test_defaults_are_the_go_agents() -> None:
    cfg = load_config({})
    assert cfg.backend.host == "" and not cfg.backend_enabled
    assert cfg.export.batch_size == 1000
    assert (cfg.features.tracing, cfg.features.metrics, cfg.features.logs) == (False,) * 3
    assert cfg.features.send_alive_tcp_connections is False
    assert cfg.k8s.enabled is True and cfg.k8s.in_cluster is True
    assert cfg.k8s.exclude_namespaces is None and cfg.k8s.namespace_filter == ""
    assert cfg.log.level == "info" and cfg.log.disabled is False
    assert cfg.logstream.backend == "log-alaz.getanteon.com:443" and cfg.logstream.tls is True
    assert cfg.logstream.max_connection == 30
    assert (cfg.capture.capture_bytes, cfg.capture.ring_bytes) == (1024, 16 << 20)
    assert cfg.capture.poll_interval_ms == 20
    assert cfg.output is None and cfg.ready_file is None and cfg.warnings == ()
    assert cfg.backend.alaz_version.startswith("v")


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_SIZE", "77")
    assert load_config().export.batch_size == 77


def test_every_go_variable_is_read() -> None:
    cfg = load_config(
        {
            **BACKEND,
            "TRACING_ENABLED": "true", "METRICS_ENABLED": "1", "LOGS_ENABLED": "T",
            "SEND_ALIVE_TCP_CONNECTIONS": "TRUE", "BATCH_SIZE": "500",
            "K8S_COLLECTOR_ENABLED": "false", "IN_CLUSTER": "false",
            "EXCLUDE_NAMESPACES": "^anteon.*", "CRI_RUNTIME_ENDPOINT": "unix:///run/crio.sock",
            "LOG_LEVEL": "0", "DISABLE_LOGS": "true", "LOG_CONTEXT_KEY": "1234",
            "TEST_MODE": "true", "LOG_BACKEND": "x:1", "LOG_BACKEND_SERVER_NAME": "x",
            "LOG_BACKEND_TLS": "false", "LOG_BACKEND_MAX_CONNECTION": "3",
        }
    )  # fmt: skip
    assert cfg.backend.host == "http://backend/api" and cfg.backend_enabled
    assert (cfg.backend.monitoring_id, cfg.backend.node_name) == ("m-1", "node-1")
    assert cfg.features.tracing and cfg.features.metrics and cfg.features.logs
    assert cfg.features.send_alive_tcp_connections
    assert cfg.export.batch_size == 500
    assert not cfg.k8s.enabled and not cfg.k8s.in_cluster
    assert cfg.k8s.exclude_namespaces is not None
    assert cfg.k8s.exclude_namespaces.match("anteon-system")
    assert cfg.k8s.namespace_filter == "^anteon.*"
    assert cfg.k8s.cri_runtime_endpoint == "unix:///run/crio.sock"
    assert (cfg.log.level, cfg.log.disabled, cfg.log.context_key) == ("debug", True, "1234")
    assert cfg.backend.test_mode
    assert cfg.logstream == cfg.logstream.model_copy(
        update=dict(backend="x:1", server_name="x", tls=False, max_connection=3)
    )


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_true_spellings(text: str) -> None:
    assert go_parse_bool(text) is True
    assert load_config({"TRACING_ENABLED": text}).features.tracing is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_go_false_spellings(text: str) -> None:
    assert go_parse_bool(text) is False
    assert load_config({"METRICS_ENABLED": text}).features.metrics is False


@pytest.mark.parametrize("text", ["yes", "on", "tRuE", " true", "2"])
def test_an_invalid_go_bool_means_false_with_a_warning(text: str) -> None:
    assert go_parse_bool(text) is None
    cfg = load_config({"TRACING_ENABLED": text})
    assert cfg.features.tracing is False
    assert len(cfg.warnings) == 1 and "TRACING_ENABLED" in cfg.warnings[0]


@pytest.mark.parametrize(
    ("text", "enabled"),
    [("false", False), ("0", False), ("F", False), ("true", True), ("garbage", True), ("", True)],
)
def test_k8s_collector_is_on_unless_parsed_as_false(text: str, enabled: bool) -> None:
    assert load_config({"K8S_COLLECTOR_ENABLED": text}).k8s.enabled is enabled


@pytest.mark.parametrize(
    ("text", "in_cluster"), [("false", False), ("False", True), ("0", True), ("true", True)]
)
def test_in_cluster_unless_exactly_false(text: str, in_cluster: bool) -> None:
    assert load_config({"IN_CLUSTER": text}).k8s.in_cluster is in_cluster


@pytest.mark.parametrize(
    ("text", "level"),
    [("-1", "debug"), ("0", "debug"), ("1", "info"), ("2", "warn"), ("3", "error"),
     ("4", "error"), ("5", "error"), ("warning", "warn"), ("DEBUG", "debug")],
)  # fmt: skip
def test_log_level_takes_zerolog_numbers_and_names(text: str, level: str) -> None:
    assert load_config({"LOG_LEVEL": text}).log.level == level


def test_flags_win_over_the_environment() -> None:
    env = {**BACKEND, "BATCH_SIZE": "10", "TRACING_ENABLED": "false", "ALAZ_OUTPUT": "/a"}
    cfg = load_config(
        env, batch_size=20, tracing_enabled=True, output="-", capture_bytes="4096",
        node_name="node-2", log_level=None,
    )  # fmt: skip
    assert cfg.export.batch_size == 20
    assert cfg.features.tracing is True
    assert cfg.output == "-"
    assert cfg.capture.capture_bytes == 4096
    assert cfg.backend.node_name == "node-2"
    assert cfg.log.level == "info"  # None means "flag not given"


def test_our_variables() -> None:
    cfg = load_config(
        {
            "ALAZ_CAPTURE_BYTES": "16384", "ALAZ_RING_BYTES": str(64 << 20),
            "ALAZ_POLL_INTERVAL_MS": "5", "ALAZ_OUTPUT": "/tmp/out.jsonl",
            "ALAZ_READY_FILE": "/tmp/ready", "ALAZ_EXPORT_QUEUE_ROWS": "5000",
            "ALAZ_EXPORT_QUEUE_BYTES": "1048576", "ALAZ_EXPORT_MAX_IN_FLIGHT": "8",
            "ALAZ_EXPORT_FLUSH_MS": "250", "ALAZ_VERSION": "v0.11.4",
        }
    )  # fmt: skip
    assert (cfg.capture.capture_bytes, cfg.capture.ring_bytes) == (16384, 64 << 20)
    assert cfg.capture.poll_interval_ms == 5
    assert (cfg.output, cfg.ready_file) == ("/tmp/out.jsonl", "/tmp/ready")
    assert (cfg.export.queue_rows, cfg.export.queue_bytes) == (5000, 1 << 20)
    assert (cfg.export.max_in_flight, cfg.export.flush_interval_ms) == (8, 250)
    assert cfg.backend.alaz_version == "v0.11.4"


def test_monitoring_id_and_node_name_only_required_with_a_backend() -> None:
    assert load_config({"NODE_NAME": "n"}).backend.node_name == "n"
    with pytest.raises(ConfigError, match=r"^missing MONITORING_ID: required when BACKEND_HOST"):
        load_config({"BACKEND_HOST": "http://x", "NODE_NAME": "n"})
    with pytest.raises(ConfigError, match=r"^missing NODE_NAME"):
        load_config({"BACKEND_HOST": "http://x", "MONITORING_ID": "m"})
    assert load_config({"BACKEND_HOST": "http://x", "TEST_MODE": "true"}).backend_enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BATCH_SIZE": "abc"}, "invalid BATCH_SIZE='abc': not an integer"),
        ({"BATCH_SIZE": "0"}, "invalid BATCH_SIZE='0': must be >= 1"),
        ({"EXCLUDE_NAMESPACES": "(kube"}, "invalid EXCLUDE_NAMESPACES='(kube': not a valid "
                                          "regular expression: missing ), unterminated "
                                          "subpattern at position 0"),
        ({"BACKEND_HOST": "backend:8008"}, "invalid BACKEND_HOST='backend:8008': must start "
                                           "with http:// or https://"),
        ({"LOG_LEVEL": "7"}, "invalid LOG_LEVEL='7': expected a zerolog level -1..5 or a level "
                             "name"),
        ({"ALAZ_CAPTURE_BYTES": "16385"}, "invalid ALAZ_CAPTURE_BYTES='16385': must be <= 16384"),
        ({"ALAZ_CAPTURE_BYTES": "0"}, "invalid ALAZ_CAPTURE_BYTES='0': must be >= 1"),
        ({"ALAZ_RING_BYTES": str(3 << 20)}, "invalid ALAZ_RING_BYTES='3145728': must be a "
                                            "power of two"),
        ({"ALAZ_RING_BYTES": str(1 << 19)}, "invalid ALAZ_RING_BYTES='524288': must be >= "
                                            "1048576"),
        ({"LOG_BACKEND_MAX_CONNECTION": "x"}, "invalid LOG_BACKEND_MAX_CONNECTION='x': not an "
                                              "integer"),
    ],
)  # fmt: skip
def test_invalid_values_name_the_variable_in_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    text = str(caught.value)
    assert text == message
    assert "\n" not in text and "pydantic" not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ring_bytes": 3 << 20}, "invalid --ring-bytes=3145728: must be a power of two"),
        ({"capture_bytes": "lots"}, "invalid --capture-bytes='lots': not an integer"),
        ({"tracing_enabled": "maybe"}, "invalid --tracing-enabled='maybe': expected true or "
                                       "false"),
        ({"poll_interval": 5}, "unknown setting 'poll_interval'"),
    ],
)  # fmt: skip
def test_invalid_flags_name_the_flag(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({}, **overrides)
    assert str(caught.value) == message


def test_override_names_cover_the_cli_flags() -> None:
    names = set(override_names())
    assert {"backend_host", "batch_size", "output", "ready_file", "capture_bytes", "ring_bytes",
            "poll_interval_ms", "exclude_namespaces", "log_level"} <= names  # fmt: skip
    assert all(name.isidentifier() for name in names)


def test_config_is_immutable() -> None:
    cfg = load_config({})
    with pytest.raises(ValidationError):
        cfg.output = "-"
    assert isinstance(cfg, AgentConfig)
