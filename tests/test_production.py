"""The production deployment as shipped, checked without a container engine: the Dockerfiles pass
hadolint, the compose file validates against the Compose specification's JSON schema, the
Kubernetes manifests (the Kustomize base, rendered here) pass kubernetes-validate, every
environment variable they set is a setting the code reads, every setting that production requires
is set, and production mode refuses to start without its secrets."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from flags.settings import FlagSettings
from ingest.settings import GatewaySettings
from rtm import production
from rtm.settings import PROJECT_ROOT, Settings
from rtm.topics import RAW_IMU
from tests.test_deploy import parse_rtm

PROD = PROJECT_ROOT / "deploy" / "production"
K8S = PROJECT_ROOT / "deploy" / "kubernetes" / "production"
BIN = Path(sys.executable).parent
IMAGE = "rtm-pipeline"
K8S_VERSION = "1.32"

# Variables of the image's containers that are not RTM_* settings, each read by a library we run.
FOREIGN = {
    "FORWARDED_ALLOW_IPS": "uvicorn: which proxies' X-Forwarded-* headers to trust",
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client: multiprocess metrics (ingest/multiproc.py)",
}
# Custom resources of the operators the chart depends on (no schema in kubernetes-validate).
CUSTOM_KINDS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"), ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("postgresql.cnpg.io/v1", "Cluster"), ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"), ("monitoring.coreos.com/v1", "PodMonitor"),
}
SECRETS = set(production.SECRET_MIN_LENGTH)


def setting_names() -> set[str]:
    names = set()
    for model in (Settings, GatewaySettings, FlagSettings):
        prefix = model.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in model.model_fields}
    return names


def component_of(argv: list[str]) -> production.Component | None:
    """Which production component a container runs (its arguments to `rtm`)."""
    if argv[:1] == ["--help"]:
        return None
    name, params = parse_rtm(argv)
    if name == "provision":
        return "migrate" if params["what"].value == "database" else "topics"
    if name in ("gateway", "worker"):
        component: production.Component = name  # type: ignore[assignment]
        return component
    return None


# --- the image -------------------------------------------------------------------------------------


def final_stage(dockerfile: Path) -> list[str]:
    lines = dockerfile.read_text().replace("\\\n", " ").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    return lines[starts[-1]:]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in final_stage(PROD / "Dockerfile"):
        if line.startswith("ENV "):
            env |= dict(pair.split("=", 1) for pair in shlex.split(line[4:]))
    return env


@pytest.mark.parametrize("dockerfile", [PROD / "Dockerfile", K8S / "timescaledb-cnpg.Dockerfile"], ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    proc = subprocess.run([str(BIN / "hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_image_is_pinned_multistage_non_root_without_build_tools_and_checks_health() -> None:
    text = (PROD / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) == 2 and len(set(bases)) == 1, bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[0])  # a Python patch and a Debian release
    final = final_stage(PROD / "Dockerfile")
    assert not any(re.search(r"\b(gcc|build-essential|libc6-dev|apt-get install)\b", line) for line in final)
    (user,) = [line.split()[1] for line in final if line.startswith("USER ")]
    assert not user.startswith(("0", "root"))
    (health,) = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert '"cli.healthcheck"' in health
    assert [line for line in final if line.startswith("ENTRYPOINT")] == ['ENTRYPOINT ["rtm"]']
    env = image_env()
    assert env["RTM_ENVIRONMENT"] == "production" and env["RTM_GATEWAY_HOST"] == "0.0.0.0"
    assert set(env) - {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"} <= setting_names()


def test_dockerignore_lets_in_every_package_the_image_installs() -> None:
    kept = {line[1:].rstrip("/") for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")}
    copied = {src.rstrip("/") for line in re.findall(r"^COPY (.+)$", (PROD / "Dockerfile").read_text(), re.M)
              if not line.startswith("--from") for src in line.split()[:-1]}
    packages = re.search(r'include = \[(.*)\]', (PROJECT_ROOT / "pyproject.toml").read_text())
    assert packages
    wanted = {p.strip().strip('"').rstrip("*") for p in packages.group(1).split(",")}
    assert wanted | {"pyproject.toml", "README.md"} <= kept
    assert copied <= kept and copied >= wanted, (copied, kept)


def test_healthcheck_asks_the_readiness_endpoint_of_what_the_container_runs() -> None:
    from cli.healthcheck import target

    port = GatewaySettings().port
    assert target(["/sbin/docker-init", "--", "rtm", "gateway", "--workers", "2"]) == \
        f"http://127.0.0.1:{port}/readyz"
    assert target(["/opt/venv/bin/python", "/opt/venv/bin/rtm", "gateway", "--port", "9000"]) == \
        "http://127.0.0.1:9000/readyz"
    worker = target(["/opt/venv/bin/rtm", "worker", "--loglevel", "info"])
    assert worker is not None and worker.endswith("/ready/")
    assert target(["rtm", "provision", "database"]) is None and target(["sleep", "1"]) is None


# --- compose ---------------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}")


def interpolate(node: Any, env: dict[str, str], key: str = "") -> Any:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error} (empty counts as unset)."""
    if isinstance(node, dict):
        return {k: interpolate(v, env, k) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if not isinstance(node, str):
        return node

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.groups()
        value = env.get(name, "")
        if value:
            return value
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == "-" else ""

    result = _VAR.sub(one, node)
    # Compose casts a value to its field's type: the one integer field here that takes a variable.
    return int(result) if key == "replicas" else result


def env_example() -> dict[str, str]:
    return dict(line.split("=", 1) for line in (PROD / ".env.example").read_text().splitlines()
                if line and not line.startswith("#"))


def filled_env() -> dict[str, str]:
    """.env.example with its empty values filled as an operator would."""
    return {k: v or f"{k.lower()}-0123456789abcdef0123456789abcdef" for k, v in env_example().items()}


def compose() -> dict[str, Any]:
    raw = yaml.safe_load((PROD / "docker-compose.yml").read_text())
    result: dict[str, Any] = interpolate(raw, filled_env())
    return result


def rtm_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in doc["services"].items() if svc.get("image", "").startswith(IMAGE)}


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads((PROD / "schema" / "compose-spec.json").read_text())
    doc = compose()
    jsonschema.Draft201909Validator(schema).validate(doc)
    broken = doc | {"services": doc["services"] | {"worker": doc["services"]["worker"] | {"restart": 3}}}
    with pytest.raises(jsonschema.ValidationError):  # the schema is strict enough to catch a wrong type
        jsonschema.Draft201909Validator(schema).validate(broken)


def test_compose_refuses_to_start_with_a_secret_missing_from_the_env_file() -> None:
    raw = yaml.safe_load((PROD / "docker-compose.yml").read_text())
    example = env_example()
    assert {k for k, v in example.items() if not v} >= {
        "KAFKA_CLUSTER_ID", "PG_SUPERUSER_PASSWORD", "RTM_GATEWAY_PEPPER", "RTM_PG_OWNER_PASSWORD",
        "RTM_PG_WRITER_PASSWORD", "RTM_PG_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}  # no default secret
    for secret in ("RTM_GATEWAY_PEPPER", "RTM_PG_WRITER_PASSWORD", "PG_SUPERUSER_PASSWORD"):
        with pytest.raises(KeyError, match=secret):
            interpolate(raw, filled_env() | {secret: ""})
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().split("deploy/production/", 1)[1].split()[0]


def test_compose_kafka_is_kraft_with_three_replicated_brokers_and_volumes() -> None:
    services = compose()["services"]
    brokers = {n: s for n, s in services.items() if s.get("image", "").startswith("apache/kafka:")}
    assert len(brokers) == 3
    for svc in brokers.values():
        env = svc["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3" and env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        listeners = {p.split("://")[0] for p in env["KAFKA_LISTENERS"].split(",")}
        assert listeners <= set(protocols)
        assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in svc["volumes"])
        assert "healthcheck" in svc
    assert len({s["volumes"][0] for s in brokers.values()}) == 3


def test_compose_services_start_in_order_and_check_health() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            if cond["condition"] == "service_completed_successfully":
                assert services[dep]["restart"] == "no", dep
        if svc.get("restart") == "unless-stopped":
            assert "healthcheck" in svc, name
    runs = {name: component_of(svc["command"]) for name, svc in rtm_services(compose()).items()}
    assert runs == {"topics": "topics", "migrate": "migrate", "gateway": "gateway", "worker": "worker", "cli": None}
    assert int(services["gateway"]["deploy"]["replicas"]) >= 2
    assert {"migrate", "topics"} <= set(services["gateway"]["depends_on"])
    assert services["proxy"]["depends_on"]["gateway"]["condition"] == "service_healthy"
    caddy = (PROD / "Caddyfile").read_text()
    assert "dynamic a gateway 8080" in caddy and "tls {$RTM_TLS}" in caddy
    assert set(services["proxy"]["environment"]) == {"RTM_PUBLIC_HOSTNAME", "RTM_TLS"}


def test_compose_sets_only_real_settings_and_every_required_one() -> None:
    names, image = setting_names(), image_env()
    for name, svc in rtm_services(compose()).items():
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert set(env) <= names | set(FOREIGN), (name, set(env) - names - set(FOREIGN))
        component = component_of(svc["command"])
        if component is not None:
            missing = set(production.REQUIRED[component]) - set(env) - set(image)
            assert not missing, (name, missing)
        for secret in SECRETS & set(env):
            assert len(env[secret]) >= production.SECRET_MIN_LENGTH[secret]
            assert re.search(r"\$\{" + secret.replace("RTM_PG_ADMIN", "PG_SUPERUSER") + r":\?",
                             (PROD / "docker-compose.yml").read_text()) or secret == "RTM_PG_ADMIN_PASSWORD"


def test_prometheus_scrapes_every_replica_and_grafana_plots_real_metrics() -> None:
    config = yaml.safe_load((PROD / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["dns_sd_configs"][0] for j in config["scrape_configs"]}
    services = compose()["services"]
    assert jobs["rtm-gateway"]["names"] == ["gateway"] and jobs["rtm-gateway"]["port"] == 8080
    assert jobs["rtm-workers"]["names"] == ["worker"]
    assert str(jobs["rtm-workers"]["port"]) == services["worker"]["environment"]["RTM_WORKER_WEB_PORT"]
    import ingest.metrics
    import processors.metrics

    exported = set()
    for module in (ingest.metrics, processors.metrics):
        for metric in vars(module).values():
            if hasattr(metric, "_name") and hasattr(metric, "_type"):
                base = metric._name + ("_total" if metric._type == "counter" else "")
                exported |= {base, f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    dashboard = json.loads((PROJECT_ROOT / "dashboards" / "grafana" / "rtm-overview.json").read_text())
    plotted = {name for panel in dashboard["panels"] for t in panel["targets"]
               for name in re.findall(r"\brtm_[a-z_]+", t["expr"])}
    assert plotted and plotted <= exported, plotted - exported
    datasource = yaml.safe_load((PROD / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {datasource["datasources"][0]["uid"]}


# --- Kubernetes ------------------------------------------------------------------------------------

CLUSTER_SCOPED = {"Namespace"}


def render_kustomization(folder: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize` makes of this base: its resources, in the namespace, with the image
    tags. The base uses only these three fields of Kustomize (asserted), so that this is exact."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "resources", "images"}
    tags = {i["name"]: i["newTag"] for i in kustomization.get("images", [])}
    docs = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((folder / resource).read_text()):
            if doc is None:
                continue
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
            for pod in pod_specs(doc):
                for c in pod.get("initContainers", []) + pod["containers"]:
                    if c["image"] in tags:
                        c["image"] = f"{c['image']}:{tags[c['image']]}"
            docs.append(doc)
    return docs


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] in ("Deployment", "Job"):
        return [doc["spec"]["template"]["spec"]]
    return []


def manifests() -> list[dict[str, Any]]:
    return render_kustomization(K8S)


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def test_kubernetes_manifests_pass_kubernetes_validate() -> None:
    docs = manifests()
    custom = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            custom += 1
            assert doc["metadata"]["name"] and isinstance(doc["spec"], dict)
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert custom == 7 and len(docs) - custom >= 15
    bad = by_kind("Deployment")["rtm-gateway"]
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def rtm_containers() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for doc in manifests():
        for pod in pod_specs(doc):
            for c in pod.get("initContainers", []) + pod["containers"]:
                if c["image"].startswith(IMAGE):
                    out.append((doc["metadata"]["name"], c))
    return out


def container_env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every variable a container gets: its own, and those of the ConfigMaps it takes whole."""
    maps = by_kind("ConfigMap")
    env = {e["name"]: e for e in c.get("env", [])}
    for source in c.get("envFrom", []):
        env |= {k: {"name": k, "value": v} for k, v in maps[source["configMapRef"]["name"]]["data"].items()}
    return env


def test_kubernetes_sets_only_real_settings_every_required_one_and_secrets_by_reference() -> None:
    names, image = setting_names(), image_env()
    assert not by_kind("Secret")  # secrets are created by the operators' team, never shipped here
    containers = rtm_containers()
    assert {component_of(c["args"]) for _, c in containers} == {"gateway", "worker", "migrate", "topics"}
    for owner, c in containers:
        env = container_env(c)
        assert set(env) <= names | set(FOREIGN), (owner, set(env) - names - set(FOREIGN))
        component = component_of(c["args"])
        assert component is not None
        missing = set(production.REQUIRED[component]) - set(env) - set(image)
        assert not missing, (owner, component, missing)
        for name in SECRETS & set(env):
            assert "secretKeyRef" in env[name].get("valueFrom", {}), (owner, name)
        mounted = {m["mountPath"] for m in c.get("volumeMounts", [])}
        uses = {"RTM_KAFKA_SSL_CAFILE": component != "migrate", "RTM_PG_SSLROOTCERT": component != "topics"}
        for key in (k for k, used in uses.items() if used):  # each CA file the container needs is mounted
            assert str(Path(env[key]["value"]).parent) in mounted, (owner, key)
        assert c["securityContext"]["readOnlyRootFilesystem"] and "/var/lib/rtm" in mounted


def test_kubernetes_probes_ask_the_real_endpoints() -> None:
    from ingest.routes import health

    gateway_paths = {getattr(r, "path", None) for r in health.router.routes}
    for name, paths in (("rtm-gateway", {"/healthz", "/readyz"}), ("rtm-worker", {"/live/", "/ready/"})):
        pod = by_kind("Deployment")[name]["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        probes = {k: c[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert {p["path"] for p in probes.values()} == paths
        assert probes["readinessProbe"]["path"] in ("/readyz", "/ready/")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert all(p["port"] in ports for p in probes.values())
        env = container_env(c)
        port_var = "RTM_GATEWAY_PORT" if name == "rtm-gateway" else "RTM_WORKER_WEB_PORT"
        assert str(next(iter(ports.values()))) == env[port_var]["value"]
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        if name == "rtm-gateway":
            assert paths <= gateway_paths
        else:
            assert pod["terminationGracePeriodSeconds"] > float(env["RTM_WORKER_STOP_TIMEOUT_S"]["value"])
            assert float(env["RTM_WORKER_STOP_TIMEOUT_S"]["value"]) > Settings().worker_stop_timeout_s - 1


def test_kubernetes_scaling_disruption_budgets_and_network_policies() -> None:
    deployments = by_kind("Deployment")
    pdbs = by_kind("PodDisruptionBudget")
    for name, d in deployments.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "rtm"
        assert any(p["spec"]["selector"]["matchLabels"].items() <= labels.items() for p in pdbs.values()), name
    (hpa,) = by_kind("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rtm-gateway" and hpa["spec"]["minReplicas"] >= 2
    (scaled,) = by_kind("ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "rtm-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka" and trigger["metadata"]["topic"] == RAW_IMU.name
    assert trigger["metadata"]["consumerGroup"] == Settings().app_id
    assert scaled["spec"]["maxReplicaCount"] == RAW_IMU.partitions
    assert trigger["authenticationRef"]["name"] in by_kind("TriggerAuthentication")
    policies = by_kind("NetworkPolicy")
    deny = policies["rtm-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    assert deny["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "rtm"}
    (kafka,) = by_kind("Kafka").values()
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    assert kafka["spec"]["kafka"]["config"]["default.replication.factor"] == 3
    (pool,) = by_kind("KafkaNodePool").values()
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller", "broker"}
    (db,) = by_kind("Cluster").values()
    assert "timescaledb" in db["spec"]["postgresql"]["shared_preload_libraries"]
    config = by_kind("ConfigMap")["rtm-config"]["data"]
    assert config["RTM_KAFKA_BOOTSTRAP"].startswith(f"{kafka['metadata']['name']}-kafka-bootstrap:")
    assert config["RTM_PG_HOST"] == f"{db['metadata']['name']}-rw"


# --- production mode refuses to start without its secrets -----------------------------------------------


def production_env(**extra: str) -> dict[str, str]:
    """The environment of a process in production mode with nothing else set (no local secrets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTM_", "PROMETHEUS_"))}
    return env | {"RTM_ENVIRONMENT": "production"} | extra


def run_rtm(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "rtm"), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "code", "named"), [
    (["gateway", "--port", "1"], 1, ["RTM_GATEWAY_PEPPER", "RTM_PG_WRITER_PASSWORD", "RTM_PG_READER_PASSWORD",
                                     "RTM_PG_HOST"]),
    (["worker"], 78, ["RTM_PG_WRITER_PASSWORD", "RTM_TOPIC_REPLICATION", "RTM_BROKER_FLAVOUR"]),
    (["provision", "database"], 1, ["RTM_PG_ADMIN_PASSWORD", "RTM_PG_OWNER_PASSWORD", "RTM_PG_READER_PASSWORD"]),
    (["provision", "topics"], 1, ["RTM_KAFKA_BOOTSTRAP", "RTM_TOPIC_REPLICATION"]),
])
def test_production_commands_refuse_to_start_without_their_settings(args: list[str], code: int,
                                                                     named: list[str]) -> None:
    proc = run_rtm(args, production_env())
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "refuses to start in production" in proc.stderr
    for name in named:
        assert f"{name} is not set" in proc.stderr


def test_production_refuses_short_secrets_and_the_tansu_flavour_and_accepts_a_full_configuration() -> None:
    full = {name: "x" * 40 for name in SECRETS} | {
        "RTM_PG_HOST": "db", "RTM_KAFKA_BOOTSTRAP": "k:9092", "RTM_BROKER_FLAVOUR": "kafka",
        "RTM_TOPIC_REPLICATION": "3", "RTM_KAFKA_IDEMPOTENT_PRODUCER": "true", "RTM_WORKER_WEB_HOST": "0.0.0.0",
        "RTM_GATEWAY_HOST": "0.0.0.0"}

    def found(component: production.Component, env: dict[str, str]) -> list[str]:
        settings = Settings(**{k[4:].lower(): v for k, v in env.items() if not k.startswith("RTM_GATEWAY_")},
                            environment="production")
        gateway = GatewaySettings(**{k[12:].lower(): v for k, v in env.items() if k.startswith("RTM_GATEWAY_")})
        return production.problems(component, settings, gateway)

    for component in production.REQUIRED:
        assert found(component, full) == []
    assert found("gateway", full | {"RTM_GATEWAY_PEPPER": "short"}) == [
        "RTM_GATEWAY_PEPPER is shorter than 32 characters"]
    assert any("must be 'kafka'" in p for p in found("worker", full | {"RTM_BROKER_FLAVOUR": "tansu"}))
    assert production.problems("gateway", Settings(), GatewaySettings()) == []  # the local stack: no demands


def test_systemd_example_is_production_and_refused_until_its_placeholder_password_is_replaced() -> None:
    env = dict(line.split("=", 1) for line in (PROJECT_ROOT / "deploy" / "systemd" / "rtm.env.example")
               .read_text().splitlines() if line and not line.startswith("#"))
    settings = Settings(**{k[4:].lower(): v for k, v in env.items()})
    assert settings.environment == "production"
    assert production.problems("worker", settings) == ["RTM_PG_WRITER_PASSWORD is shorter than 16 characters"]


def test_production_never_falls_back_to_generated_local_secrets(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pg_writer_password").write_text("a-local-generated-password")
    local = Settings(state_dir=tmp_path)
    assert local.role_password("writer") == "a-local-generated-password"
    prod = Settings(state_dir=tmp_path, environment="production")
    with pytest.raises(RuntimeError, match="RTM_PG_WRITER_PASSWORD is not set"):
        prod.role_password("writer")
    with pytest.raises(RuntimeError, match="RTM_GATEWAY_PEPPER is not set"):
        GatewaySettings().pepper_bytes(tmp_path / "secrets", "production")
    assert not (tmp_path / "secrets" / "gateway_pepper").exists()  # nothing generated
    pepper = GatewaySettings().pepper_bytes(tmp_path / "secrets", "local")
    assert pepper == GatewaySettings().pepper_bytes(tmp_path / "secrets", "local")  # kept in the state folder
    assert GatewaySettings(pepper=SecretStr("p" * 40)).pepper_bytes(tmp_path, "production") == b"p" * 40


def test_tls_settings_reach_the_database_connection_string() -> None:
    s = Settings(pg_sslmode="verify-full", pg_sslrootcert=Path("/etc/rtm/db-ca/ca.crt"), pg_writer_password="w" * 20)
    assert "sslmode=verify-full" in s.dsn("writer") and "sslrootcert=/etc/rtm/db-ca/ca.crt" in s.dsn("writer")
    from rtm.kafka import client_options

    assert client_options(Settings()) == {"bootstrap_servers": Settings().kafka_bootstrap}
    with pytest.raises(FileNotFoundError):  # SSL with a CA file that is not there fails at once
        client_options(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=Path("/nonexistent/ca.crt")))
