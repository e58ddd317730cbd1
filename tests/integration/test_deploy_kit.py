"""What can be proven about deploy/ without a Docker engine or a cluster: the alert rules
pass `promtool check rules` and their unit tests; every metric the rules and the dashboard
name is one a running OpsFlow exports (read from a real /metrics scrape, not a list); every
environment variable compose and the manifests pass is a setting OpsFlow reads, and their
values are valid settings; every command they run parses with the real `opsflow` CLI; the
Dockerfile copies files that exist; YAML and JSON parse; CI runs `.ci/run`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from prometheus_client.parser import text_string_to_metric_families

from opsflow.cli import app as cli_app
from opsflow.config import Settings, known_variables
from opsflow.context import AppContext

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
IMAGE = "opsflow:local"  # the compose services built from deploy/Dockerfile
K8S_IMAGE = "opsflow"  # the image name kustomization.yaml rewrites
# Read by uvicorn, which `opsflow serve` runs: which proxies may set X-Forwarded-For.
NOT_OPSFLOW_BUT_READ = {"FORWARDED_ALLOW_IPS"}
# Prometheus's own per-target series.
PROMETHEUS_SERIES = {"up"}
REQUIRED = os.environ.get("OPSFLOW_CI") == "1" or os.environ.get("OPSFLOW_REQUIRE_SERVICES") == "1"


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if REQUIRED:
            pytest.fail("promtool is missing (Debian package `prometheus`; .ci/run installs it)")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    return found


# --- PromQL -------------------------------------------------------------------------------

_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names, label matchers, label
    lists, range and offset durations and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        if match.group(2) or match.group(1).lower() in _PROMQL_WORDS:
            continue
        names.add(match.group(1))
    return names


def test_the_promql_reader_finds_metric_names_only() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{status=~"5.."}[5m])))'
        " / on (instance) group_left max without (job) (b - b offset 15m) > bool 0.5 "
        "and c_total"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c_total"}


@pytest.fixture
async def exported(client: httpx.AsyncClient, app_context: AppContext) -> set[str]:
    """Every series name a running OpsFlow's /metrics offers: the samples it shows, and for
    each family (also those without samples yet) the names its type produces."""
    # The delivery circuits are reported once the process has built its notifier (its
    # delivery engine does so on its first pass).
    assert app_context.notifier is not None
    await client.get("/health")  # one observed request, so the HTTP histogram has samples
    response = await client.get("/metrics")
    assert response.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        names.update(sample.name for sample in family.samples)
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count", ""),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def rule_expressions() -> dict[str, str]:
    (document,) = load_yaml_documents(PROMETHEUS / "alerts.yml")
    return {
        rule["alert"]: rule["expr"]
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def dashboard_expressions() -> dict[str, str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "opsflow.json").read_text())
    return {
        f"{panel['title']} / {target['refId']}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }


def test_alert_rules_cover_what_an_operator_pages_on() -> None:
    rules = rule_expressions()
    joined = " ".join(rules.values())
    for metric in (
        "opsflow_sla_breaches_total",  # breach rate
        "opsflow_sla_engine_lag_seconds_bucket",  # engine lag
        'opsflow_notifications{status="dead"}',  # dead letters
        "opsflow_outbox_backlog",  # outbox backlog
        'opsflow_http_request_duration_seconds_count{status=~"5.."}',  # error rate
    ):
        assert metric in joined


async def test_rules_and_dashboard_name_only_metrics_opsflow_exports(exported: set[str]) -> None:
    assert "opsflow_outbox_backlog" in exported  # the scrape reached the database series
    expressions = {**rule_expressions(), **dashboard_expressions()}
    unknown = {}
    for where, expr in expressions.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        missing = names - exported - PROMETHEUS_SERIES
        if missing:
            unknown[where] = sorted(missing)
    assert unknown == {}


def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "rules", "alerts.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = subprocess.run(
        [tool, "test", "rules", "alerts.test.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_accepts_the_prometheus_configuration(tmp_path: Path) -> None:
    """prometheus.yml as compose mounts it: the rule file it names is the one mounted."""
    tool = promtool()
    (config,) = load_yaml_documents(PROMETHEUS / "prometheus.yml")
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    compose = compose_file()
    assert (
        "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"
        in (compose["services"]["prometheus"]["volumes"])
    )
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        [tool, "check", "config", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- settings, commands, files ----------------------------------------------------------


def compose_file() -> dict[str, Any]:
    (document,) = load_yaml_documents(DEPLOY / "docker-compose.yml")
    assert isinstance(document, dict)
    return document


def opsflow_services() -> dict[str, dict[str, Any]]:
    services = compose_file()["services"]
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def k8s_documents() -> list[dict[str, Any]]:
    return [
        doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in load_yaml_documents(path)
    ]


def deployments() -> list[dict[str, Any]]:
    return [d for d in k8s_documents() if d["kind"] == "Deployment"]


def k8s_containers() -> list[dict[str, Any]]:
    containers = []
    for doc in k8s_documents():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        containers += spec.get("initContainers", []) + spec.get("containers", [])
    return containers


def _interpolated(value: object) -> str:
    """A compose value with `${VAR...}` replaced by a stand-in secret."""
    return re.sub(r"\$\{[A-Z_]+(?::?[-?][^}]*)?\}", "x" * 40, str(value))


def _settings_from(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in known_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(DEPLOY)  # no .env of a checkout
    settings = Settings()
    settings.check_safe()  # what `opsflow serve` and `opsflow check` refuse
    return settings


def test_compose_passes_only_settings_opsflow_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    services = opsflow_services()
    assert {"migrate", "api-1", "api-2", "worker", "beat"} <= set(services)
    known = known_variables() | NOT_OPSFLOW_BUT_READ
    for name, service in services.items():
        environment = {key: _interpolated(v) for key, v in service["environment"].items()}
        assert set(environment) - known == set(), name
        settings = _settings_from(environment, monkeypatch)
        assert settings.app_env == "production"
        assert not settings.is_sqlite
        assert settings.auto_migrate is False


def test_kubernetes_passes_only_settings_opsflow_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = k8s_documents()
    (config_map,) = [d for d in documents if d["kind"] == "ConfigMap"]
    (secret,) = [d for d in documents if d["kind"] == "Secret"]
    known = known_variables() | NOT_OPSFLOW_BUT_READ
    assert set(config_map["data"]) - known == set()
    assert set(secret["stringData"]) - known == set()
    assert set(config_map["data"]) & set(secret["stringData"]) == set()
    for container in k8s_containers():
        assert {e["name"] for e in container.get("env", [])} - known == set()
        assert {
            ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]
        } == {"opsflow"}
    settings = _settings_from({**config_map["data"], **secret["stringData"]}, monkeypatch)
    assert settings.storage == "s3"  # pods share no disk


def _parses(args: list[str]) -> None:
    """`opsflow ARGS` is a command with valid options (parsed, not run)."""
    group = typer.main.get_command(cli_app)
    name, *rest = args
    with typer.Context(group, info_name="opsflow") as context:
        command = group.get_command(context, name)  # type: ignore[attr-defined]
        assert command is not None, f"opsflow has no command {name!r}"
        command.make_context(name, rest, parent=context)


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_every_command_the_kit_runs_exists() -> None:
    commands = [service["command"] for service in opsflow_services().values()]
    commands += [container["args"] for container in k8s_containers()]
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile(), re.MULTILINE)
    commands.append(json.loads(cmd))
    assert {c[0] for c in commands} >= {"serve", "migrate", "worker", "beat", "check"}
    for args in commands:
        _parses(args)
    with pytest.raises(AssertionError, match="no command 'serve-forever'"):
        _parses(["serve-forever"])
    with pytest.raises(Exception, match="No such option: --threads"):
        _parses(["worker", "--threads", "2"])


async def test_probes_and_healthcheck_ask_paths_opsflow_serves(client: httpx.AsyncClient) -> None:
    (api,) = [d for d in deployments() if d["metadata"]["name"] == "opsflow-api"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    paths = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    assert paths == {"/ready", "/"}
    assert "http://127.0.0.1:8000/health" in dockerfile()
    for path in [*paths, "/health", "/metrics"]:
        response = await client.get(f"http://testserver{path}")
        assert response.status_code == 200, (path, response.text)


def test_the_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = dockerfile()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages == ["build", "runtime"]
    assert "COPY --from=build /opt/opsflow /opt/opsflow" in text
    (user,) = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user.split(":")[0] not in {"0", "root"}
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["opsflow"\]$', text, re.MULTILINE)
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = [
        source
        for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE)
        for source in line.split()
    ]
    assert copied == ["pyproject.toml", "README.md", "LICENSE", "src"]
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source not in ignored, source
    for name in re.findall(r"\b(OPSFLOW_[A-Z_]+)=", text):
        assert name in known_variables(), name


def test_compose_mounts_files_that_exist() -> None:
    compose = compose_file()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    for upstream in re.findall(r"server (api-\d):8000", nginx):
        assert upstream in compose["services"]
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx
    assert re.search(r"location ~ \^/api/v1/ws", nginx)


def test_every_yaml_and_json_file_parses_and_ci_runs_ci_run() -> None:
    files = [*sorted(DEPLOY.rglob("*.y*ml")), ROOT / ".github" / "workflows" / "ci.yml"]
    assert len(files) >= 10
    for path in files:
        assert load_yaml_documents(path), path
    for path in DEPLOY.rglob("*.json"):
        json.loads(path.read_text())
    (workflow,) = load_yaml_documents(ROOT / ".github" / "workflows" / "ci.yml")
    steps = workflow["jobs"]["ci"]["steps"]
    assert any(step.get("run") == ".ci/run" for step in steps)
    kinds = {d["kind"] for d in k8s_documents()}
    assert kinds >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
        "Job",
    }
    (beat,) = [d for d in deployments() if d["metadata"]["name"] == "opsflow-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
