"""Kubernetes manifests (deploy/k8s), alert rules and dashboard: structure and agreed names.

Runs offline: plain YAML/JSON checks, plus `kubectl kustomize` when kubectl is installed.
"""

from __future__ import annotations

import json

from typing import Any

import pytest
import yaml
import deploy_facts as F  # on sys.path via tests/deploy/conftest.py


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container.get("env", [])}


def _pod_template(name: str, kind: str) -> dict[str, Any]:
    return F.by_kind(F.k8s_manifests(), kind)[name]["spec"]["template"]


# --------------------------------------------------------------------------- kustomize

def test_kustomization_lists_every_file_in_deploy_k8s() -> None:
    listed = F.kustomization()["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    on_disk = {
        p.relative_to(F.K8S).as_posix()
        for p in F.K8S.rglob("*")
        if p.is_file() and p.suffix in {".yaml", ".yml"} and p.name != "kustomization.yaml"
    }
    assert on_disk - set(listed) == set(), "files in deploy/k8s missing from kustomization.yaml"
    assert set(listed) - on_disk == set(), "kustomization.yaml lists files that do not exist"
    others = {p.relative_to(F.K8S).as_posix() for p in F.K8S.rglob("*") if p.is_file()} - on_disk
    assert others == {"kustomization.yaml"}, f"unexpected non-manifest files: {others}"


def test_every_manifest_parses_and_names_its_namespace() -> None:
    manifests = F.k8s_manifests()
    assert manifests
    for m in manifests:
        assert {"apiVersion", "kind", "metadata"} <= m.doc.keys(), m.path
        if m.kind != "Namespace":
            assert m.doc["metadata"].get("namespace") == "rnpc", f"{m.path}: {m.kind}/{m.name}"


@pytest.mark.deploy_tools
def test_kustomize_renders_the_same_objects_offline() -> None:
    assert F.tool("kubectl"), "kubectl not installed"
    result = F.run(["kubectl", "kustomize", str(F.K8S)])
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    got = sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
    want = sorted((m.kind, m.name) for m in F.k8s_manifests())
    assert got == want
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "rnpc"
    images = {
        c["image"]
        for d in rendered
        if d["kind"] in {"Deployment", "Job"}
        for c in _containers(d["spec"]["template"]["spec"])
    }
    assert images == {f"rnpc/{svc}:0.1.0" for svc in F.SERVICES}


# --------------------------------------------------------------------------- workloads

def _check_container_hardening(where: str, container: dict[str, Any], pod_spec: dict[str, Any]) -> None:
    sc = container.get("securityContext", {})
    pod_sc = pod_spec.get("securityContext", {})
    assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    assert isinstance(uid, int) and uid > 0, f"{where}: numeric non-root runAsUser"
    assert sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
    assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities.drop ALL"
    resources = container.get("resources", {})
    for key in ("cpu", "memory"):
        assert key in resources.get("limits", {}), f"{where}: limits.{key}"
        assert key in resources.get("requests", {}), f"{where}: requests.{key}"
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    assert "/tmp" in mounts, f"{where}: writable /tmp on a read-only root filesystem"


def test_every_deployment_has_probes_limits_and_runs_as_non_root() -> None:
    deployments = F.by_kind(F.k8s_manifests(), "Deployment")
    assert deployments
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        assert pod.get("securityContext", {}).get("runAsNonRoot") is True, name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in _containers(pod):
            _check_container_hardening(f"{name}/{container['name']}", container, pod)
        for container in pod["containers"]:
            where = f"{name}/{container['name']}"
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            live = container.get("livenessProbe", {}).get("httpGet", {})
            ready = container.get("readinessProbe", {}).get("httpGet", {})
            assert live.get("path") == "/livez", f"{where}: liveness on /livez"
            assert ready.get("path") == "/readyz", f"{where}: readiness on /readyz"
            startup = container.get("startupProbe", {}).get("httpGet")
            assert startup is None or startup.get("path") == "/livez", f"{where}: startup on /livez"
            for probe in (live, ready, container.get("startupProbe", {}).get("httpGet", {})):
                if probe:
                    assert probe["port"] in ports or probe["port"] in ports.values(), where


def test_every_job_is_hardened_and_bounded() -> None:
    jobs = F.by_kind(F.k8s_manifests(), "Job")
    assert len(jobs) == len(F.SERVICES)
    for name, job in jobs.items():
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never", name
        assert pod.get("securityContext", {}).get("runAsNonRoot") is True, name
        assert job["spec"].get("backoffLimit") is not None, name
        assert job["spec"].get("activeDeadlineSeconds"), name
        for container in _containers(pod):
            _check_container_hardening(f"{name}/{container['name']}", container, pod)


@pytest.mark.parametrize("svc", sorted(F.SERVICES))
def test_service_workload_is_wired_as_agreed(svc: str) -> None:
    port = F.SERVICES[svc]
    prefix = svc.upper()
    manifests = F.k8s_manifests()

    # ConfigMap: the agreed settings
    data = F.by_kind(manifests, "ConfigMap")[f"{svc}-config"]["data"]
    assert data[f"{prefix}_KAFKA_BOOTSTRAP_SERVERS"].endswith(":9093"), "the TLS listener"
    assert data[f"{prefix}_KAFKA_FETCH_MAX_WAIT_MS"] == "500"
    assert data[f"{prefix}_RUN_API"] in {"true", "false"}
    assert data[f"{prefix}_RUN_CONSUMER"] in {"true", "false"}
    assert data[f"{prefix}_PORT"] == str(port)
    assert data[f"{prefix}_HOST"] == "0.0.0.0", "the settings default to 127.0.0.1"
    assert data[f"{prefix}_LOG_LEVEL"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    if svc == "gateway":
        assert data["GATEWAY_SCORING_URL"] == "http://scoring:8001"
        assert data["GATEWAY_EVIDENCE_URL"] == "http://evidence:8002"
        assert data["GATEWAY_RECOMMENDATION_URL"] == "http://recommendation:8003"

    # Deployment
    dep = F.by_kind(manifests, "Deployment")[svc]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    main = next(c for c in pod["spec"]["containers"] if c["name"] == svc)
    assert main["image"].startswith(f"rnpc/{svc}:")
    assert main["command"] == ["python", "-m", f"rnpc_{svc}"]
    assert [p["containerPort"] for p in main["ports"]] == [port]
    env_from = [e.get("configMapRef", e.get("secretRef", {})).get("name") for e in main["envFrom"]]
    assert f"{svc}-config" in env_from
    env = _env(main)
    if svc == "gateway":
        for var, key, optional in (("GATEWAY_SERVICE_CLIENT_SECRET", "service-client-secret", False),
                                   ("GATEWAY_FHIR_SERVER_TOKEN", "fhir-server-token", True)):
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"], ref.get("optional", False)) == ("rnpc-gateway-auth", key, optional)
    url = env[f"{prefix}_DATABASE_URL"]["value"]
    assert url.startswith("postgresql+asyncpg://") and url.endswith(f"@rnpc-pg-rw:5432/{svc}")
    for var in ("RNPC_DB_USER", "RNPC_DB_PASSWORD"):
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == f"rnpc-db-{svc}"
        assert f"$({var})" in url
    names = list(env)
    assert names.index("RNPC_DB_PASSWORD") < names.index(f"{prefix}_DATABASE_URL"), (
        "variables referenced with $(VAR) must be defined earlier in the list"
    )

    # Service selects the Deployment's pods and not the migration Job's
    service = F.by_kind(manifests, "Service")[svc]
    assert service["spec"]["type"] == "ClusterIP"
    selector = service["spec"]["selector"]
    assert selector.items() <= labels.items()
    job_labels = _pod_template(f"{svc}-migrate", "Job")["metadata"]["labels"]
    assert not selector.items() <= job_labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, "http")]
    assert service["metadata"]["labels"]["rnpc.io/job"] == f"rnpc-{svc}"

    # PodDisruptionBudget and ServiceMonitor
    pdb = F.by_kind(manifests, "PodDisruptionBudget")[svc]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    sm = F.by_kind(manifests, "ServiceMonitor")[svc]
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["jobLabel"] == "rnpc.io/job"
    assert [(e["port"], e["path"]) for e in sm["spec"]["endpoints"]] == [("http", "/metrics")]

    # Migration Job: the agreed command, same image and database, before the app starts
    job = _pod_template(f"{svc}-migrate", "Job")["spec"]
    migrate = job["containers"][0]
    assert migrate["command"] == ["alembic", "-c", "migrations/alembic.ini", "-n", svc, "upgrade", "head"]
    assert migrate["image"] == main["image"]
    assert _env(migrate)[f"{prefix}_DATABASE_URL"] == env[f"{prefix}_DATABASE_URL"]
    init = {c["name"]: c for c in pod["spec"].get("initContainers", [])}
    assert "wait-for-migrations" in init, "new pods must wait for the migration Job"
    assert "upgrade" not in " ".join(init["wait-for-migrations"]["command"]), "never migrate in the app pod"


def test_only_the_gateway_has_an_ingress_and_it_uses_tls() -> None:
    ingresses = F.by_kind(F.k8s_manifests(), "Ingress")
    assert list(ingresses) == ["gateway"]
    spec = ingresses["gateway"]["spec"]
    assert spec["tls"] and spec["tls"][0]["secretName"]
    hosts = {h for t in spec["tls"] for h in t["hosts"]}
    backends = set()
    for rule in spec["rules"]:
        assert rule["host"] in hosts, "every routed host must be covered by TLS"
        for path in rule["http"]["paths"]:
            backends.add(path["backend"]["service"]["name"])
            assert path["path"] not in {"/", "/metrics", "/livez", "/readyz"}, path["path"]
    assert backends == {"gateway"}


# Served by the gateway once the issues that add them land: FHIR R4 (issue 12) and CDS Hooks.
PLANNED_GATEWAY_PREFIXES = {"/fhir/r4", "/cds-services"}
OPS_PATHS = {"/livez", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def _gateway_paths() -> set[str]:
    """Every path the gateway app documents in its OpenAPI schema, and its own (nothing is started),
    built with the settings Kubernetes gives it (the app refuses insecure ones)."""
    from rnpc_gateway.app import create_app

    app = create_app(F.settings_from("gateway", F.k8s_env("gateway")))  # type: ignore[arg-type]
    return set(app.openapi()["paths"]) | {route.path for route in app.routes if hasattr(route, "path")}


def _under(path: str, prefix: str) -> bool:
    """Whether an Ingress Prefix path matches this request path (element-wise, as Kubernetes does)."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def test_ingress_routes_exactly_the_gateway_api() -> None:
    paths = [p for rule in F.by_kind(F.k8s_manifests(), "Ingress")["gateway"]["spec"]["rules"]
             for p in rule["http"]["paths"]]
    prefixes = {p["path"] for p in paths}
    assert {p["pathType"] for p in paths} == {"Prefix"}
    served = _gateway_paths()
    api = served - OPS_PATHS
    assert api, "the gateway serves no API route"
    for prefix in prefixes:
        assert prefix in PLANNED_GATEWAY_PREFIXES or any(_under(p, prefix) for p in served), (
            f"the Ingress routes {prefix}, which the gateway does not serve"
        )
    assert {p for p in api if not any(_under(p, prefix) for prefix in prefixes)} == set(), "API not routed"
    assert {p for p in served & OPS_PATHS if any(_under(p, prefix) for prefix in prefixes)} == set()
    assert PLANNED_GATEWAY_PREFIXES <= prefixes


def test_monitoring_objects_carry_the_release_label_kube_prometheus_stack_selects() -> None:
    manifests = F.k8s_manifests()
    objects = [*F.by_kind(manifests, "ServiceMonitor").values(), *F.by_kind(manifests, "PrometheusRule").values()]
    assert len(objects) == len(F.SERVICES) + 1
    for doc in objects:
        assert doc["metadata"]["labels"].get("release") == "kube-prometheus-stack", doc["metadata"]["name"]


# --------------------------------------------------------------------------- authentication

SECRET_WORDS = ("SECRET", "PASSWORD", "FHIR_SERVER_TOKEN", "PRIVATE")


@pytest.mark.parametrize("svc", sorted(F.SERVICES))
def test_services_start_in_the_production_profile_with_the_deployed_settings(svc: str) -> None:
    """The ConfigMap + Deployment pass the service's own start-up security check (issuer, https
    JWKS, the gateway's client credentials), in the production profile, with no dev issuer."""
    from rnpc_shared.settings import DEV_ISSUER, ConfigurationError

    env = F.k8s_env(svc)
    settings = F.settings_from(svc, env)
    assert settings.profile == "production"
    assert settings.dev_issuer_dir is None
    issuers = settings.trusted_issuers()
    assert issuers and all(i.issuer != DEV_ISSUER and i.jwks_uri.startswith("https://") for i in issuers)
    assert settings.audience == f"rnpc-{svc}", "internal tokens are minted per service audience"
    settings.check_security()  # raises ConfigurationError when the service would refuse to start
    # ...and the check is not vacuous: without the issuer the same settings are refused
    prefix = F.kafka_use()[svc].env_prefix
    with pytest.raises(ConfigurationError):
        F.settings_from(svc, {k: v for k, v in env.items() if k != f"{prefix}AUTH_ISSUERS"}).check_security()


@pytest.mark.parametrize("svc", sorted(F.SERVICES))
def test_no_secret_in_a_configmap(svc: str) -> None:
    manifests = F.k8s_manifests()
    data = F.by_kind(manifests, "ConfigMap")[f"{svc}-config"]["data"]
    assert not [k for k in data if any(word in k for word in SECRET_WORDS)], "secrets come from a Secret"
    fields = type(F.kafka_use()[svc].settings).model_fields
    secret_fields = {name for name, field in fields.items() if "SecretStr" in str(field.annotation)}
    assert "database_url" in secret_fields
    prefix = F.kafka_use()[svc].env_prefix
    assert not {f"{prefix}{name.upper()}" for name in secret_fields} & set(data)


# --------------------------------------------------------------------------- network policy

def _peers_outside_namespace(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        peer
        for rule in policy["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if "namespaceSelector" in peer or "ipBlock" in peer
    ]


def _namespace_of(peer: dict[str, Any]) -> str | None:
    return peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")


def test_network_policies_expose_only_the_gateway() -> None:
    policies = F.by_kind(F.k8s_manifests(), "NetworkPolicy")
    deny = [p for p in policies.values() if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    assert deny and "Ingress" in deny[0]["spec"]["policyTypes"], "default-deny ingress policy"

    for name, policy in policies.items():
        selected = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for peer in _peers_outside_namespace(policy):
            assert "ipBlock" not in peer, f"{name}: no ipBlock peers"
            ns = _namespace_of(peer)
            assert ns, f"{name}: a namespaceSelector must name one namespace"
            if ns == "monitoring":
                assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
            elif ns == "cnpg-system":
                assert "cnpg.io/cluster" in policy["spec"]["podSelector"]["matchLabels"], name
            else:
                assert selected == "gateway", f"{name}: only the gateway may be reached from {ns}"

    for svc in ("scoring", "evidence", "recommendation"):
        policy = policies[f"{svc}-ingress"]
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == svc
        for rule in policy["spec"]["ingress"]:
            assert [p["port"] for p in rule["ports"]] == [F.SERVICES[svc]]
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    assert _namespace_of(peer) == "monitoring"
                else:
                    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "gateway"

    gateway_rules = policies["gateway-ingress"]["spec"]["ingress"]
    assert {p["port"] for r in gateway_rules for p in r["ports"]} == {F.SERVICES["gateway"]}


def test_pods_carry_the_labels_the_kafka_and_postgres_policies_admit() -> None:
    manifests = F.k8s_manifests()
    for svc in F.SERVICES:
        labels = _pod_template(svc, "Deployment")["metadata"]["labels"]
        assert labels.get("rnpc.io/kafka-client") == "true"
        assert labels.get("rnpc.io/postgres-client") == "true"
        job_labels = _pod_template(f"{svc}-migrate", "Job")["metadata"]["labels"]
        assert job_labels.get("rnpc.io/postgres-client") == "true"
    kafka = F.by_kind(manifests, "Kafka")["rnpc-kafka"]
    for listener in kafka["spec"]["kafka"]["listeners"]:
        peers = listener.get("networkPolicyPeers")
        assert peers == [{"podSelector": {"matchLabels": {"rnpc.io/kafka-client": "true"}}}], listener["name"]


# --------------------------------------------------------------------------- Kafka and Postgres

def test_every_topic_has_a_kafkatopic() -> None:
    manifests = F.k8s_manifests()
    topics = F.by_kind(manifests, "KafkaTopic")
    kafka_names = set(F.by_kind(manifests, "Kafka"))
    by_topic = {t["spec"].get("topicName", name): t for name, t in topics.items()}
    assert set(by_topic) == F.TOPICS
    for topic, doc in by_topic.items():
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] in kafka_names
        assert doc["spec"]["partitions"] == 6, topic
        assert doc["spec"]["replicas"] == 3, topic
        if topic in F.COMPACTED_TOPICS:
            assert doc["spec"]["config"]["cleanup.policy"] == "compact", topic
            continue
        want = F.DLQ_RETENTION_MS if topic.endswith(".dlq") else F.RETENTION_MS
        assert int(doc["spec"]["config"]["retention.ms"]) == want, topic
        assert doc["spec"]["config"]["cleanup.policy"] == "delete", topic


def test_kafka_runs_kraft_with_node_pools() -> None:
    manifests = F.k8s_manifests()
    (kafka_name, kafka), = F.by_kind(manifests, "Kafka").items()
    assert "zookeeper" not in kafka["spec"]
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    pools = F.by_kind(manifests, "KafkaNodePool").values()
    roles = {role for pool in pools for role in pool["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka_name
        if "broker" in pool["spec"]["roles"]:
            assert pool["spec"]["replicas"] >= 3, "replication 3 needs three brokers"
    bootstrap = f"{kafka_name}-kafka-bootstrap:9093"
    for svc in F.SERVICES:
        data = F.by_kind(manifests, "ConfigMap")[f"{svc}-config"]["data"]
        assert data[f"{svc.upper()}_KAFKA_BOOTSTRAP_SERVERS"] == bootstrap


def test_one_postgres_database_and_role_per_service() -> None:
    manifests = F.k8s_manifests()
    (cluster_name, cluster), = F.by_kind(manifests, "Cluster").items()
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    databases = {d["spec"]["name"]: d for d in F.by_kind(manifests, "Database").values()}
    assert set(roles) == set(F.SERVICES)
    assert set(databases) == set(F.SERVICES)
    for svc in F.SERVICES:
        assert roles[svc]["login"] is True and roles[svc]["passwordSecret"]["name"] == f"rnpc-db-{svc}"
        assert databases[svc]["spec"]["owner"] == svc
        assert databases[svc]["spec"]["cluster"]["name"] == cluster_name
        assert databases[svc]["spec"].get("databaseReclaimPolicy", "retain") == "retain"
    assert cluster["spec"].get("enableSuperuserAccess") is False


# --------------------------------------------------------------------------- metric names

def test_alert_rules_use_only_agreed_metric_names_and_labels() -> None:
    rules = F.alert_rules(yaml.safe_load((F.DEPLOY / "prometheus" / "alerts.yml").read_text()))
    problems = [f"{r['alert']}: {p}" for r in rules for p in F.promql_problems(r["expr"])]
    assert problems == []
    used = set().union(*(F.rnpc_series_names(r["expr"]) for r in rules))
    assert used, "alert rules reference no rnpc metric"


def test_dashboard_uses_only_agreed_metric_names_and_labels() -> None:
    dashboard = json.loads((F.DEPLOY / "grafana" / "dashboards" / "rnpc.json").read_text())
    exprs = F.dashboard_exprs(dashboard)
    assert exprs
    problems = [f"{title}: {p}" for title, expr in exprs for p in F.promql_problems(expr)]
    assert problems == []


def test_dashboard_shows_every_agreed_metric() -> None:
    dashboard = json.loads((F.DEPLOY / "grafana" / "dashboards" / "rnpc.json").read_text())
    used = {F.metric_base_name(n) for _, e in F.dashboard_exprs(dashboard) for n in F.rnpc_series_names(e)}
    assert set(F.METRICS) - used == set(), "metrics without a panel"


def test_metric_checker_rejects_drift() -> None:
    """The checks above would notice a renamed metric, label or label value."""
    assert F.promql_problems('sum by (service) (rate(rnpc_http_requests_total{status=~"5.."}[5m]))') == []
    assert F.promql_problems("rate(rnpc_http_request_total[5m])")  # typo in the name
    assert F.promql_problems('rnpc_events_consumed_total{outcome="failed"}')  # not an outcome
    assert F.promql_problems('rnpc_outbox_pending{topic="x"}')  # label the metric does not have
    assert F.promql_problems("sum by (route) (rnpc_consumer_lag)")  # grouping by a foreign label
    assert F.promql_problems("rnpc_consumer_lag_bucket")  # suffix on a non-histogram
    assert F.promql_problems("histogram_quantile(0.9, rate(rnpc_event_processing_seconds_bucket[5m]))") == []
