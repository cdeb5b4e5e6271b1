"""deploy/ and grafana/provisioning/: valid files that agree with each other and with the proxy."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from proxy.config_loading import validate
from tests.observability.tools import ROOT, require

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
PROVISIONING = ROOT / "grafana" / "provisioning"
REPLICAS = {"thriftgate-1", "thriftgate-2"}


def _compose_cli() -> list[str]:
    """`docker compose` where the plugin is installed, else Debian's docker-compose."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return [require("docker-compose", "docker-compose")]


def _resolved_compose() -> dict:
    result = subprocess.run([*_compose_cli(), "-f", str(COMPOSE), "--profile", "demo", "config"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid_and_wires_the_stack() -> None:
    services = _resolved_compose()["services"]
    assert set(services) == REPLICAS | {"lb", "redis", "postgres", "prometheus", "grafana", "demo"}
    assert services["demo"]["profiles"] == ["demo"]
    for replica in REPLICAS:
        assert "--workers" in services[replica]["command"]
        assert services[replica]["depends_on"]["postgres"]["condition"] == "service_healthy"
        dsn = urlsplit(services[replica]["environment"]["THRIFTGATE_LEDGER_DSN"])
        assert (dsn.hostname, dsn.path) == ("postgres", "/" + services["postgres"]["environment"]["POSTGRES_DB"])
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert set(re.findall(r"server (thriftgate-\d):4100", nginx)) == REPLICAS
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    targets = {target for job in scrape for group in job["static_configs"] for target in group["targets"]}
    assert {target.split(":")[0] for target in targets} == REPLICAS


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    [provider] = yaml.safe_load((PROVISIONING / "dashboards" / "thriftgate.yaml").read_text())["providers"]
    assert provider["options"]["path"] == mounts["../grafana/dashboards"]
    [datasource] = yaml.safe_load((PROVISIONING / "datasources" / "thriftgate.yaml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"


def test_compose_and_kubernetes_configs_are_valid_thriftgate_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    configmap = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())
    secret = yaml.safe_load((DEPLOY / "k8s" / "secret.yaml").read_text())
    for name in ("REDIS_URL", "THRIFTGATE_LEDGER_DSN"):  # as the Deployment passes them
        monkeypatch.setenv(name, secret["stringData"][name])
    compose_config = validate(yaml.safe_load((DEPLOY / "thriftgate.yaml").read_text()))
    assert compose_config.server.host == "0.0.0.0"
    k8s_text = configmap["data"]["thriftgate.yaml"]
    k8s_config = validate(yaml.safe_load(k8s_text))
    assert k8s_config.server.port == 4100
    # Two replicas each: budgets and keys need the store they share; no password in a config file.
    assert urlsplit(compose_config.store.redis_url).hostname == "redis"
    assert k8s_config.store.redis_url_env == "REDIS_URL" and "redis://" not in k8s_text
    for config in (compose_config, k8s_config):
        assert config.store.backend == "redis" and urlsplit(config.store.redis_url).password is None
        # One ledger for the fleet, its DSN (with its password) from the environment only.
        assert config.ledger.backend == "postgres" and config.ledger.dsn_env == "THRIFTGATE_LEDGER_DSN"
    assert "postgresql://" not in k8s_text and "postgresql://" not in (DEPLOY / "thriftgate.yaml").read_text()


def test_kubernetes_deployment_probes_secrets_and_scrape_annotations() -> None:
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    [container] = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    secrets = {env["name"]: env["valueFrom"]["secretKeyRef"]["name"] for env in container["env"] if "valueFrom" in env}
    assert secrets == {"OPENAI_API_KEY": "thriftgate-secrets", "REDIS_URL": "thriftgate-secrets",
                       "THRIFTGATE_LEDGER_DSN": "thriftgate-secrets"}
    config_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config")
    assert container["args"][container["args"].index("--config") + 1] == f"{config_mount}/thriftgate.yaml"
    assert pod["spec"]["terminationGracePeriodSeconds"] > validate({}).server.shutdown_grace_seconds
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    manifests = {path.name for path in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_dockerfile_bakes_the_tokenizer_runs_as_a_user_and_checks_health(tmp_path: Path) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    assert "/healthz" in dockerfile.split("HEALTHCHECK", 1)[1]
    bake = re.search(r'python -c "(from proxy\.accounting\.tokens import TokenCounter; TokenCounter\(\))"', dockerfile)[1]
    cache = tmp_path / "tiktoken"
    subprocess.run([sys.executable, "-c", bake], cwd=ROOT, check=True, timeout=60,
                   env={**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)})
    assert len(list(cache.iterdir())) == 2  # both encodings: the image needs no network to count tokens
