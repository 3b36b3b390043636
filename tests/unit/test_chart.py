"""The Helm chart (charts/alaz), rendered with the Helm SDK and validated against the schemas of
Kubernetes 1.27 through 1.35 (kubernetes-validate, strict: unknown fields are errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

helm = pytest.importorskip("helm_python", reason="pip install helm-python-sdk (test extra)")
kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
yaml = pytest.importorskip("yaml")

from alaz import doctor  # noqa: E402
from alaz.config import load_config  # noqa: E402

CHART = Path(__file__).resolve().parents[2] / "charts" / "alaz"
KUBE_VERSIONS = [f"1.{minor}.0" for minor in range(27, 36)]
INTENDED_CAPS = [name.removeprefix("CAP_") for name in doctor.CAPABILITIES]

NON_DEFAULT: dict[str, Any] = {
    "backendHost": "https://api-alaz.getanteon.com:443",
    "monitoringID": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    "output": "/var/log/alaz/rows.jsonl",
    "tracingEnabled": True,
    "metricsEnabled": True,
    "sendAliveTcpConnections": True,
    "excludedNamespaces": "^(anteon|monitoring)$",
    "criRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
    "logLevel": 0,
    "batchSize": 250,
    "captureBytes": 4096,
    "ringBytes": 33554432,
    "containerPort": 9090,
    "prometheusScrape": True,
    "extraEnv": [{"name": "ALAZ_POLL_INTERVAL_MS", "value": "50"}],
    "extraCapabilities": ["CAP_SYS_PTRACE", "sys_resource"],
    "seccompProfile": {"type": "Unconfined"},
    "hostMounts": {"debugfs": False},
    "extraVolumes": [{"name": "rows", "hostPath": {"path": "/var/log/alaz"}}],
    "extraVolumeMounts": [{"name": "rows", "mountPath": "/var/log/alaz"}],
    "image": {
        "repository": "registry.example.com/obs/alaz",
        "tag": "v1.2.3",
        "pullPolicy": "Always",
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "namespace": "anteon",
    "fullnameOverride": "alaz-agent",
    "serviceAccount": {"create": True, "name": "alaz-sa", "annotations": {"a": "b"}},
    "resources": {"requests": {"cpu": "1", "memory": "400Mi"}, "limits": {"memory": "2Gi"}},
    "nodeSelector": {"kubernetes.io/os": "linux", "pool": "apps"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "apps", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                        ]
                    }
                ]
            }
        }
    },
    "priorityClassName": "system-node-critical",
    "podAnnotations": {"team": "obs"},
    "podLabels": {"tier": "node"},
    "doctor": {"enabled": False},
}
PRIVILEGED: dict[str, Any] = {
    "privileged": True,
    "image": "ddosify/alaz:v0.11.4",
    "imagePullPolicy": "Always",
}


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    chart = helm.Chart.load(str(CHART))
    try:
        return dict(chart.render(values or {}, name="alaz", namespace="obs", is_install=True))
    finally:
        chart.close()


def manifests(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    docs = []
    for path, text in render(values).items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def pod_spec(values: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(manifests(values), "DaemonSet")["spec"]["template"]["spec"]
    return spec


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# -- lint and schema validation ------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, NON_DEFAULT, PRIVILEGED], ids=["default", "custom", "priv"])
@pytest.mark.parametrize("kube", ["1.27.0", "1.31.0", "1.35.0"])
def test_lint_strict(values: dict[str, Any], kube: str) -> None:
    result = helm.lint(str(CHART), values, strict=True, kube_version=f"v{kube}")
    assert result["errors"] == []
    # severity 1 is INFO ("icon is recommended"); WARNING (2) and ERROR (4) must not occur
    assert [m for m in result["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("values", [{}, NON_DEFAULT, PRIVILEGED], ids=["default", "custom", "priv"])
def test_every_manifest_validates_strictly(values: dict[str, Any]) -> None:
    docs = manifests(values)
    assert {d["kind"] for d in docs} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
    }
    for kube in KUBE_VERSIONS:
        for doc in docs:
            kv.validate(doc, kube, strict=True)  # raises ValidationError


def test_validation_catches_a_broken_manifest() -> None:
    ds = by_kind(manifests(), "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = "no"
    with pytest.raises(kv.ValidationError):
        kv.validate(ds, "1.30.0", strict=True)
    ds = by_kind(manifests(), "DaemonSet")
    ds["spec"]["template"]["spec"]["hostPid"] = True  # misspelt field: strict rejects it
    with pytest.raises(kv.ValidationError):
        kv.validate(ds, "1.30.0", strict=True)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"backendHost": "https://b.example"}, "monitoringID"),
        ({"priviledged": True}, "priviledged"),
        ({"backendHost": "b.example:443", "monitoringID": "x"}, "backendHost"),
        ({"captureBytes": 65536}, "captureBytes"),
        ({"image": {"repository": "r", "pullPolicy": "Sometimes"}}, "pullPolicy"),
    ],
)
def test_bad_values_are_refused(values: dict[str, Any], words: str) -> None:
    with pytest.raises(helm.HelmError, match=words):
        render(values)


# -- least privilege -----------------------------------------------------------------------------


def test_default_is_not_privileged_and_adds_exactly_the_needed_capabilities() -> None:
    spec = pod_spec()
    assert [c["name"] for c in containers(spec)] == ["doctor", "alaz"]
    for c in containers(spec):
        sc = c["securityContext"]
        assert sc["privileged"] is False
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"], "add": INTENDED_CAPS}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert INTENDED_CAPS == ["BPF", "PERFMON", "SYS_PTRACE"]
    assert spec["hostPID"] is True
    assert "hostNetwork" not in spec and "securityContext" not in spec


def test_extra_capabilities_are_normalised_and_added() -> None:
    for c in containers(pod_spec(NON_DEFAULT)):
        caps = c["securityContext"]["capabilities"]
        assert caps == {"drop": ["ALL"], "add": ["BPF", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE"]}
    # SYS_ADMIN and allowPrivilegeEscalation=false are rejected together by the API server
    sc = pod_spec({"extraCapabilities": ["SYS_ADMIN"]})["containers"][0]["securityContext"]
    assert "allowPrivilegeEscalation" not in sc and "SYS_ADMIN" in sc["capabilities"]["add"]


def test_privileged_opt_in() -> None:
    spec = pod_spec(PRIVILEGED)
    for c in containers(spec):
        assert c["securityContext"] == {"privileged": True}
        assert (c["image"], c["imagePullPolicy"]) == ("ddosify/alaz:v0.11.4", "Always")
    assert "WARNING: privileged is true" in render(PRIVILEGED)["alaz/templates/NOTES.txt"]


def test_cluster_role_is_read_only_and_matches_the_doctor() -> None:
    role = by_kind(manifests(), "ClusterRole")
    granted = set()
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert sorted(rule["verbs"]) == sorted(doctor.RBAC_VERBS)
        granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == set(doctor.rbac_rules())
    binding = by_kind(manifests(), "ClusterRoleBinding")
    sa = by_kind(manifests(), "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "obs"}
    ]


def test_rbac_and_service_account_can_be_turned_off() -> None:
    docs = manifests({"rbac": {"create": False}, "serviceAccount": {"create": False}})
    assert [d["kind"] for d in docs] == ["DaemonSet"]
    assert docs[0]["spec"]["template"]["spec"]["serviceAccountName"] == "default"


# -- the pod: placement, mounts, env, probes -----------------------------------------------------


def test_default_pod_runs_everywhere_with_read_only_host_mounts() -> None:
    spec = pod_spec()
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    host_paths = {n: v["hostPath"]["path"] for n, v in volumes.items() if "hostPath" in v}
    assert host_paths == {
        "tracefs": "/sys/kernel/tracing",
        "debugfs": "/sys/kernel/debug",
        "cgroup": "/sys/fs/cgroup",
        "btf": "/sys/kernel/btf",
    }
    for c in containers(spec):
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        for name, path in host_paths.items():
            assert mounts[name]["mountPath"] == path and mounts[name]["readOnly"] is True
        assert mounts["tmp"]["mountPath"] == "/tmp"


def test_default_env_and_config_agree() -> None:
    spec = pod_spec()
    for c in containers(spec):
        env = env_of(c)
        assert env["NODE_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}
        assert env["BACKEND_HOST"] == "" and env["ALAZ_HEALTH_PORT"] == "8181"
        assert "ALAZ_OUTPUT" not in env and "EXCLUDE_NAMESPACES" not in env
    env = env_of(spec["containers"][0])
    config = load_config({k: v for k, v in env.items() if isinstance(v, str)})
    assert not config.backend_enabled and config.output is None
    assert config.features.tracing and config.capture.capture_bytes == 1024
    assert config.log.level == "info"


def test_custom_values_reach_the_agent() -> None:
    docs = manifests(NON_DEFAULT)
    ds = by_kind(docs, "DaemonSet")
    assert ds["metadata"]["name"] == "alaz-agent" and ds["metadata"]["namespace"] == "anteon"
    assert by_kind(docs, "ServiceAccount")["metadata"] == {
        **by_kind(docs, "ServiceAccount")["metadata"],
        "name": "alaz-sa",
        "namespace": "anteon",
    }
    template = ds["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
        "team": "obs",
    }
    assert template["metadata"]["labels"]["tier"] == "node"
    spec = template["spec"]
    assert "initContainers" not in spec  # doctor.enabled: false
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == NON_DEFAULT["tolerations"]
    assert spec["nodeSelector"] == NON_DEFAULT["nodeSelector"]
    assert spec["affinity"] == NON_DEFAULT["affinity"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert "debugfs" not in {v["name"] for v in spec["volumes"]}
    [agent] = spec["containers"]
    assert agent["image"] == "registry.example.com/obs/alaz:v1.2.3"
    assert agent["imagePullPolicy"] == "Always"
    assert agent["resources"] == NON_DEFAULT["resources"]
    assert agent["ports"] == [{"name": "http-metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert agent["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    env = env_of(agent)
    assert env["ALAZ_POLL_INTERVAL_MS"] == "50" and env["ALAZ_HEALTH_PORT"] == "9090"
    config = load_config({k: v for k, v in env.items() if isinstance(v, str)} | {"NODE_NAME": "n1"})
    assert config.backend.host == NON_DEFAULT["backendHost"]
    assert config.backend.monitoring_id == NON_DEFAULT["monitoringID"]
    assert config.output == "/var/log/alaz/rows.jsonl"
    assert config.k8s.namespace_filter == "^(anteon|monitoring)$"
    assert config.k8s.cri_runtime_endpoint == NON_DEFAULT["criRuntimeEndpoint"]
    assert (config.export.batch_size, config.capture.capture_bytes) == (250, 4096)
    assert config.capture.ring_bytes == 32 << 20
    assert config.log.level == "debug"
    assert config.features.metrics and config.features.send_alive_tcp_connections


def test_probes_hit_the_health_endpoints_on_the_metrics_port() -> None:
    [agent] = pod_spec()["containers"]
    port = {p["name"]: p["containerPort"] for p in agent["ports"]}
    assert port == {"http-metrics": 8181}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert agent["startupProbe"]["httpGet"]["path"] == "/healthz"
    # the start-up window covers loading the BPF programs
    assert agent["startupProbe"]["periodSeconds"] * agent["startupProbe"]["failureThreshold"] >= 60


def test_doctor_init_container_runs_the_doctor_with_the_agents_settings() -> None:
    spec = pod_spec()
    [init] = spec["initContainers"]
    [agent] = spec["containers"]
    assert init["command"] == ["alaz", "doctor"] and "command" not in agent  # ENTRYPOINT alaz run
    assert init["image"] == agent["image"] == "alaz:0.1.0"  # tag defaults to appVersion
    assert env_of(init) == env_of(agent)
    assert init["volumeMounts"] == agent["volumeMounts"]
    assert init["securityContext"] == agent["securityContext"]


def test_notes_tell_where_rows_go() -> None:
    notes = render()["alaz/templates/NOTES.txt"]
    assert "logs <pod> -c doctor" in notes and "JSON line" in notes
    assert "only BPF, PERFMON, SYS_PTRACE" in notes
    notes = render(NON_DEFAULT)["alaz/templates/NOTES.txt"]
    assert "Requests go to https://api-alaz.getanteon.com:443" in notes


def test_values_yaml_documents_each_capability() -> None:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    assert values["capabilities"] == INTENDED_CAPS and values["privileged"] is False
    for cap in [*INTENDED_CAPS, "SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"]:
        assert (
            f"#   {cap}" in text
            or f"# Not needed, so not added: {cap}" in text
            or (f"{cap} (" in text)
        ), cap
