"""Deployment files: Kubernetes manifests valid against the API schemas (``kubernetes-validate``)
and consistent with the image, the service and configuration.yaml; the Prometheus rules and the
Grafana dashboard use only metrics and labels that live servers really export; ``.env.example``
documents every serving setting."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml
from bentoml._internal.configuration.containers import BentoMLConfiguration
from bentoml._internal.container.generate import BENTO_UID_GID
from prometheus_client.parser import text_string_to_metric_families

from client import GrpcClient, HttpClient, ServiceError
from client._grpc import SERVICE_NAME as GRPC_HEALTH_SERVICE
from devtools import REPO_ROOT, free_port, isolated_home, running_server
from serving.settings import ENV_PREFIX, ServeSettings
from tests.servers import server_env

DEPLOY = REPO_ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
"""Oldest version with GA gRPC probes, and the newest the validator knows."""
SCRAPE_LABELS = {"job", "instance", "namespace", "pod", "protocol"}
"""Labels Prometheus adds at scrape time (deploy/prometheus/prometheus.yml), not the servers."""


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _by_kind() -> dict[str, dict]:
    return {d["kind"]: d for path in MANIFESTS for d in _documents(path)}


def _containers() -> dict[str, dict]:
    spec = _by_kind()["Deployment"]["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# ------------------------------------------------------------------ Kubernetes manifests


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_a_valid_kubernetes_object(path, version):
    for document in _documents(path):
        kubernetes_validate.validate(document, version, strict=True)


def test_validator_rejects_a_misspelt_probe_and_a_wrong_port_type():
    deployment = _by_kind()["Deployment"]
    misspelt = copy.deepcopy(deployment)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[-1], strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "3000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_applies_every_manifest_and_names_the_image():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    images = {c["image"].split(":")[0] for c in _containers().values()}
    assert images == {i["name"] for i in kustomization["images"]}


def test_http_container_is_probed_on_livez_and_readyz_and_grpc_with_grpc_health():
    http, grpc = _containers()["http"], _containers()["grpc"]
    assert http["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert http["startupProbe"]["httpGet"]["path"] == "/livez"
    assert http["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert grpc[probe]["grpc"] == {"port": 3010, "service": GRPC_HEALTH_SERVICE}


def test_containers_have_requests_and_limits_and_run_as_the_images_non_root_user():
    pod = _by_kind()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == BENTO_UID_GID != 0
    for container in pod["containers"]:
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_ports_agree_across_containers_service_configuration_and_prometheus():
    http, grpc = _containers()["http"], _containers()["grpc"]
    ports = {p["name"]: p["containerPort"] for c in (http, grpc) for p in c["ports"]}
    assert ports == {"http": 3000, "grpc": 3010, "grpc-metrics": 3011}
    assert http["args"] == ["serve", "--port", str(ports["http"])]
    assert grpc["args"] == ["serve-grpc", "--port", str(ports["grpc"])]
    configuration = yaml.safe_load((REPO_ROOT / "configuration.yaml").read_text())
    assert configuration["api_server"]["grpc"]["metrics"]["port"] == ports["grpc-metrics"]
    service = _by_kind()["Service"]["spec"]
    assert {p["targetPort"] for p in service["ports"]} <= set(ports)
    assert (
        service["selector"].items()
        <= _by_kind()["Deployment"]["spec"]["selector"]["matchLabels"].items()
    )
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    relabel = scrape["scrape_configs"][0]["relabel_configs"]
    kept = next(r["regex"] for r in relabel if "container_port_name" in r["source_labels"][0])
    assert set(kept.split("|")) == {"http", "grpc-metrics"}
    paths = {
        r["regex"]: r["replacement"] for r in relabel if r.get("target_label") == "__metrics_path__"
    }
    assert paths == {"http": "/metrics", "grpc-metrics": "/"}
    assert {r.get("target_label") for r in relabel} >= SCRAPE_LABELS - {"job", "instance"}


def test_worker_settings_are_valid_bentoml_configuration_within_the_cpu_limit():
    for container in _containers().values():
        options = _env(container)["BENTOML_CONFIG_OPTIONS"]
        config = BentoMLConfiguration(
            override_config_file=str(REPO_ROOT / "configuration.yaml"),
            override_config_values=" ".join(shlex.split(options)),
        ).to_dict()
        cpu_limit = float(container["resources"]["limits"]["cpu"])
        assert 1 <= config["api_server"]["workers"] <= cpu_limit
        for runner in ("features", "direction"):
            assert 0 < config["runners"][runner]["resources"]["cpu"] <= cpu_limit
            # the shipped batching settings survive the per-deployment options
            assert config["runners"][runner]["batching"]["max_latency_ms"] >= 1000


def test_clickhouse_url_comes_from_a_secret_and_each_container_spools_to_the_volume():
    pod = _by_kind()["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    spool_dirs = set()
    for container in pod["containers"]:
        env = {e["name"]: e for e in container["env"]}
        url = env["BTC_SERVE_CLICKHOUSE_URL"]
        assert "value" not in url, "the DSN may hold a password: never inline"
        ref = url["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"], ref["optional"]) == ("btcusdt-clickhouse", "url", True)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        spool = Path(env["BTC_SERVE_CLICKHOUSE_SPOOL_DIR"]["value"])
        assert spool.is_relative_to(mounts["clickhouse-spool"])
        spool_dirs.add(spool)
        settings = ServeSettings(
            clickhouse_spool_max_bytes=env["BTC_SERVE_CLICKHOUSE_SPOOL_MAX_BYTES"]["value"]
        )
        options = _env(container)["BENTOML_CONFIG_OPTIONS"]
        workers = int(re.search(r"api_server\.workers=(\d+)", options).group(1))
        container["spool_bytes"] = workers * settings.clickhouse_spool_max_bytes
    assert len(spool_dirs) == len(pod["containers"]), "one spool folder per container"
    size_limit = volumes["clickhouse-spool"]["emptyDir"]["sizeLimit"]
    assert size_limit.endswith("Mi")
    # every worker's spool full at once still fits: the kubelet evicts a pod past the limit
    assert sum(c["spool_bytes"] for c in pod["containers"]) < int(size_limit[:-2]) * 2**20


def test_autoscaler_scales_the_deployment_above_the_disruption_budget():
    kinds = _by_kind()
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        kinds["Deployment"]["metadata"]["name"],
    )
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["minReplicas"] > kinds["PodDisruptionBudget"]["spec"]["minAvailable"]
    assert hpa["minReplicas"] <= hpa["maxReplicas"]
    assert kinds["Deployment"]["spec"]["replicas"] >= hpa["minReplicas"]


# ------------------------------------------------------------------ .env.example


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def test_env_example_documents_every_serving_setting_with_its_default(monkeypatch):
    documented = _env_example()
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in ServeSettings.model_fields}
    assert settings <= set(documented), f"undocumented: {settings - set(documented)}"
    unknown = {n for n in documented if n.startswith(ENV_PREFIX) and n not in settings}
    assert not unknown, f"documented but not read by ServeSettings: {unknown}"
    for name in settings:
        monkeypatch.setenv(name, documented[name])
    from_example = ServeSettings()  # every documented value parses
    for name in settings:
        monkeypatch.delenv(name)
    defaults = ServeSettings()
    assert from_example.model_dump(exclude={"model_tag"}) == defaults.model_dump(
        exclude={"model_tag"}
    )
    assert not from_example.model_tag and not defaults.model_tag


# ------------------------------------------------------------------ metric names, live


def _promql_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "btcusdt-direction.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = dashboard["templating"]["list"]
    expressions += [v["definition"] for v in variables if v.get("type") == "query"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    expressions += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return expressions


SELECTOR = re.compile(r"\b((?:bentoml|btcusdt)_\w+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)")


def _exported(text: str) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets of its samples, from a Prometheus exposition."""
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


def _problems(expression: str, exported: dict[str, list[dict[str, str]]]) -> list[str]:
    problems = []
    names = []
    for name, matchers in SELECTOR.findall(expression):
        names.append(name)
        if name not in exported:
            problems.append(f"{name} is not exported")
            continue
        for label, operator, value in MATCHER.findall(matchers or ""):
            if label in SCRAPE_LABELS:
                continue
            if not any(label in sample for sample in exported[name]):
                problems.append(f"{name} has no label {label}")
            elif operator == "=" and not any(s.get(label) == value for s in exported[name]):
                problems.append(f'{name} never has {label}="{value}"')
    for grouping in GROUPING.findall(expression):
        for label in (g.strip() for g in grouping.split(",") if g.strip()):
            if label in SCRAPE_LABELS:
                continue
            if not any(label in s for n in names if n in exported for s in exported[n]):
                problems.append(f"no metric of {expression[:60]}... has label {label}")
    for name, label in LABEL_VALUES.findall(expression):
        if label not in SCRAPE_LABELS and not any(label in s for s in exported.get(name, [])):
            problems.append(f"{name} has no label {label}")
    return problems


@pytest.fixture(scope="module")
def live_metrics(trained_model_tag, btc_slice, tmp_path_factory) -> dict[str, list[dict]]:
    """Metrics of a real HTTP server and a real gRPC server after predict, batch predict (enough
    rows for the drift gauges), indicators and a rejected request. The ClickHouse sink is on,
    its server unreachable: its metrics are exported (the rows stay spooled)."""
    windows = [btc_slice.iloc[i * 20 : i * 20 + 300] for i in range(12)]
    base = tmp_path_factory.mktemp("deploy-metrics")
    http_port, grpc_port, grpc_metrics_port = free_port(), free_port(), free_port()
    settings = {
        "BTC_SERVE_DRIFT_WINDOW": "10",
        "BTC_SERVE_DRIFT_EVERY": "1",
        "BTC_SERVE_DRIFT_MIN_INTERVAL_S": "0",
        "BTC_SERVE_DRIFT_MIN_ROWS": "10",
        "BTC_SERVE_CLICKHOUSE_URL": f"clickhouse://127.0.0.1:{free_port()}/unreachable",
        "BTC_SERVE_CLICKHOUSE_SPOOL_DIR": str(base / "clickhouse-spool"),
    }
    http_env = {**server_env(os.environ["BENTOML_HOME"], trained_model_tag), **settings}
    grpc_home = isolated_home(base / "grpc-home", os.environ["BENTOML_HOME"])
    metrics_port = {"api_server": {"grpc": {"metrics": {"port": grpc_metrics_port}}}}
    grpc_env = {**server_env(grpc_home, trained_model_tag, metrics_port), **settings}
    common = ["--host", "127.0.0.1", "--api-workers", "1"]
    http_args = ["serve", "service:svc", "--port", str(http_port), *common]
    grpc_args = ["serve-grpc", "service:svc", "--port", str(grpc_port), *common]
    with (
        HttpClient(f"http://127.0.0.1:{http_port}") as http,
        GrpcClient(f"127.0.0.1:{grpc_port}") as grpc,
        running_server(http_args, http_env, base / "http.log", http.is_ready),
        running_server(grpc_args, grpc_env, base / "grpc.log", grpc.is_ready),
    ):
        http.predict(windows[0])
        http.predict_batch(windows)
        http.indicators(windows[0])
        rejected = httpx.post(f"http://127.0.0.1:{http_port}/predict", json={"candles": []})
        assert rejected.status_code == 400
        grpc.predict(windows[0])
        grpc.predict_batch(windows)
        with pytest.raises(ServiceError):
            grpc.predict(windows[0].iloc[:10])
        exported = _exported(httpx.get(f"http://127.0.0.1:{http_port}/metrics").text)
        grpc_text = httpx.get(f"http://127.0.0.1:{grpc_metrics_port}/").text
    for name, samples in _exported(grpc_text).items():
        exported.setdefault(name, []).extend(samples)
    return exported


@pytest.mark.integration
def test_dashboard_and_alerts_use_only_metrics_and_labels_the_servers_export(live_metrics):
    expressions = _promql_expressions()
    assert len(expressions) >= 20
    problems = [p for e in expressions for p in _problems(e, live_metrics)]
    assert problems == []


@pytest.mark.integration
def test_metric_check_catches_a_misspelt_metric_label_and_endpoint(live_metrics):
    assert _problems("sum(rate(bentoml_api_server_requests_total[5m]))", live_metrics)
    assert _problems('sum(btcusdt_model_info{modeltag="x"})', live_metrics)
    assert _problems(
        'rate(bentoml_api_server_request_total{endpoint="/predicts"}[5m])', live_metrics
    )
    assert _problems("sum by (reasons) (btcusdt_request_rejections_total)", live_metrics)


CODE_MATCHER = re.compile(r'http_response_code=~"([^"]+)"')


@pytest.mark.integration
def test_error_panels_and_alerts_tell_client_from_server_errors(live_metrics):
    """The error-share panels and alerts select codes by regex: the client-error ones must match
    the 400s both servers exported after a refused call, the server-error ones no 2xx/4xx, and
    each share panel reads 0 (not "No data") when no request ended with such a code."""
    dashboard = json.loads((DEPLOY / "grafana" / "btcusdt-direction.json").read_text())
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    panels = {p["title"]: p for p in dashboard["panels"]}
    client = panels["Client errors (4xx share)"]["targets"][0]["expr"]
    server = panels["Server errors (5xx share)"]["targets"][0]["expr"]
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    exported = live_metrics["bentoml_api_server_request_total"]
    refused = {"endpoint": "/predict", "api_name": "predict"}
    for key, value in refused.items():  # HTTP samples have endpoint, gRPC ones api_name
        codes = {s["http_response_code"] for s in exported if s.get(key) == value}
        assert {"200", "400"} <= codes, (key, codes)
    live_codes = {s["http_response_code"] for s in exported}

    for expression in (client, alerts["BtcusdtDirectionClientErrorsHigh"]):
        (pattern,) = CODE_MATCHER.findall(expression)
        assert re.fullmatch(pattern, "400") and re.fullmatch(pattern, "413")
        assert not any(re.fullmatch(pattern, c) for c in ("200", "500", "503"))
    for expression in (server, alerts["BtcusdtDirectionServerErrors"]):
        (pattern,) = CODE_MATCHER.findall(expression)
        assert re.fullmatch(pattern, "500") and re.fullmatch(pattern, "503")
        assert not any(re.fullmatch(pattern, c) for c in live_codes if c[0] in "24")
    for expression in (client, server):
        numerator = expression.split(" / ")[0]
        assert " or 0 * sum by (protocol) (rate(bentoml_api_server_request_total{" in numerator


# ------------------------------------------------------------------ the retrain CronJob

RETRAIN = KUBERNETES / "retrain"
RETRAIN_MANIFESTS = sorted(p for p in RETRAIN.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", RETRAIN_MANIFESTS, ids=lambda p: p.name)
def test_retrain_manifest_is_a_valid_kubernetes_object(path, version):
    for document in _documents(path):
        kubernetes_validate.validate(document, version, strict=True)


def test_retrain_cronjob_runs_the_real_retrain_command_on_its_volume():
    from ingest.cli import retrain

    kustomization = yaml.safe_load((RETRAIN / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in RETRAIN_MANIFESTS]
    kinds = {d["kind"]: d for p in RETRAIN_MANIFESTS for d in _documents(p)}
    cronjob = kinds["CronJob"]["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    pod = cronjob["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["btcusdt"] and container["args"][0] == "retrain"
    context = retrain.make_context("retrain", list(container["args"][1:]))  # options exist
    env = _env(container)
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for path in (
        str(context.params["out"]),
        str(context.params["report_dir"]),
        env["BENTOML_HOME"],
    ):
        assert any(path.startswith(m + "/") or path == m for m in mounts), path
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert (
        claim["persistentVolumeClaim"]["claimName"]
        == kinds["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert {c["image"].split(":")[0] for c in pod["containers"]} == {
        i["name"] for i in kustomization["images"]
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
