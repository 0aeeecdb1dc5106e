"""The deployment files under deploy/: valid for their tools, and consistent with each other
and with the metrics contract (deploy/metrics.txt).

Checks that need an outside tool (promtool, docker compose, nginx, systemd-analyze, openssl)
run when the tool is on PATH and are skipped, naming it, when it is not. The text checks
always run. PyYAML is not a dependency: rule expressions are read with a small line reader.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fitrelay.json"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
NGINX = DEPLOY / "nginx" / "fitrelay.conf"
UNITS = {
    "serve": DEPLOY / "systemd" / "fitrelay.service",
    "index": DEPLOY / "systemd" / "fitrelay-indexer.service",
}
COMPOSE_SERVICES = {"postgres", "relay", "indexer", "blackbox", "prometheus", "grafana"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


# ---- the metrics contract ---------------------------------------------------------------------


class Family(NamedTuple):
    type: str
    labels: frozenset[str]


def contract() -> dict[str, Family]:
    """deploy/metrics.txt: family name → type and label names."""
    families: dict[str, Family] = {}
    for number, raw in enumerate((DEPLOY / "metrics.txt").read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        assert len(fields) == 3, f"metrics.txt:{number}: want name, type, labels: {raw!r}"
        name, kind, labels = fields
        assert name not in families, f"metrics.txt:{number}: {name} listed twice"
        families[name] = Family(
            kind, frozenset() if labels == "-" else frozenset(labels.split(","))
        )
    return families


_SUFFIXES = {
    "_total": "counter",
    "_bucket": "histogram",
    "_sum": "histogram",
    "_count": "histogram",
}
_METRIC = re.compile(r"\b((?:fitrelay|process)_[a-z0-9_]+)")
_RATE = re.compile(r"\b(?:rate|irate|increase)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


def metric_problems(expr: str, families: dict[str, Family]) -> list[str]:
    """What is wrong with the metric names an expression uses, as exposed on /metrics."""
    problems = []
    for name in _METRIC.findall(expr):
        family = families.get(name)
        if family is not None:
            if family.type != "gauge":
                problems.append(f"{name} is a {family.type}: its samples carry a suffix")
            continue
        for suffix, kind in _SUFFIXES.items():
            base = name.removesuffix(suffix)
            if base != name and base in families:
                if families[base].type != kind:
                    problems.append(f"{name}: {base} is a {families[base].type}, not a {kind}")
                break
        else:
            problems.append(f"{name} is not in deploy/metrics.txt")
    for name in _RATE.findall(expr):
        if not name.endswith(tuple(_SUFFIXES)):
            problems.append(f"rate/increase of {name}, which is not a counter or histogram series")
    if "histogram_quantile" in expr:
        if "_bucket" not in expr or not re.search(r"by \([^)]*\ble\b", expr):
            problems.append("histogram_quantile needs _bucket series summed by (…, le)")
    return problems


def test_metrics_contract_is_well_formed() -> None:
    families = contract()
    assert len(families) >= 40
    for name, family in families.items():
        assert re.fullmatch(r"(fitrelay|process)_[a-z0-9_]+", name), name
        assert family.type in {"counter", "gauge", "histogram"}, (name, family.type)
        if family.type == "counter":
            assert not name.endswith("_total"), f"{name}: list counters without _total"
        if family.type == "histogram":
            assert not name.endswith(("_bucket", "_sum", "_count")), name
        for label in family.labels:
            assert re.fullmatch(r"[a-z_]+", label) and label != "le", (name, label)
    assert families["fitrelay_events_rejected"].labels == {"reason", "kind"}
    assert families["fitrelay_build_info"] == Family("gauge", frozenset({"version"}))


def test_metric_checker_catches_wrong_names() -> None:
    families = contract()
    assert metric_problems("rate(fitrelay_events_accepted_total[5m])", families) == []
    assert metric_problems("fitrelay_events_accepted", families)  # counter without _total
    assert metric_problems("rate(fitrelay_connections[5m])", families)  # rate of a gauge
    assert metric_problems("fitrelay_connections_total", families)  # gauge with _total
    assert metric_problems("fitrelay_no_such_metric", families)
    assert metric_problems("histogram_quantile(0.5, rate(fitrelay_count_seconds[1m]))", families)


def test_relay_registers_only_contract_metrics() -> None:
    """Every family the relay's Metrics registers at construction is in the contract, with the
    same type and labels (families added later by callbacks are checked against a running
    relay elsewhere)."""
    metrics_module = pytest.importorskip("relay.server.metrics")
    try:
        registry = metrics_module.Metrics().registry
    except TypeError as exc:
        pytest.skip(f"relay.server.metrics.Metrics() needs arguments now: {exc}")
    families = contract()
    problems = []
    for metric in registry.collect():
        family = families.get(metric.name)
        if family is None:
            problems.append(f"{metric.name} ({metric.type}) is not in deploy/metrics.txt")
            continue
        if metric.type != family.type:
            problems.append(f"{metric.name} is a {metric.type}, the contract says {family.type}")
        labels = {k for s in metric.samples for k in s.labels if k != "le"}
        if not labels <= family.labels:
            problems.append(f"{metric.name} has labels {sorted(labels)}")
    assert problems == []


# ---- alert rules --------------------------------------------------------------------------------


def alert_rules(text: str) -> dict[str, str]:
    """Alert name → its rule's text, read line by line (no YAML parser needed)."""
    rules: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        match = re.match(r"\s*- alert:\s*(\S+)\s*$", line)
        if match:
            name = match.group(1)
            assert name not in rules, f"alert {name} defined twice"
            rules[name] = ""
        elif re.match(r"\s*- (record|name):", line):
            name = None
        elif name is not None:
            rules[name] += line + "\n"
    return rules


def rule_expr(rule: str) -> str:
    """The expr of a rule's text: inline, or a block scalar (| or >)."""
    lines = rule.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"(\s*)expr:\s*(.*)$", line)
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2).strip()
        if value not in {"|", ">", "|-", ">-"}:
            return value.strip("'\"")
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        return " ".join(block).strip()
    raise AssertionError(f"no expr in rule:\n{rule}")


def test_alert_rules_cover_the_required_conditions() -> None:
    rules = alert_rules(ALERTS.read_text())
    exprs = {name: rule_expr(rule) for name, rule in rules.items()}
    assert "up{" in exprs["FitrelayDown"] and "== 0" in exprs["FitrelayDown"]
    assert "probe_success" in exprs["FitrelayNotReady"]
    assert "fitrelay_indexer_lag_seconds" in exprs["FitrelayIndexerLagging"]
    assert 'reason="error"' in exprs["FitrelayStoreErrors"]
    assert 'reason="error"' in exprs["FitrelayQueryErrors"]
    assert "fitrelay_slow_client_disconnects_total" in exprs["FitrelaySlowClientDisconnects"]
    pool = exprs["FitrelayDbPoolExhausted"]
    assert "fitrelay_db_pool_max" in pool and "fitrelay_db_pool_waiting" in pool
    for name, rule in rules.items():
        assert re.search(r"^\s*for: \d+m$", rule, re.M), f"{name} has no for: duration"
        assert re.search(r"^\s*severity: (critical|warning)$", rule, re.M), name
        assert "summary:" in rule and "description:" in rule, name


def test_alert_rules_use_contract_metrics() -> None:
    families = contract()
    for name, rule in alert_rules(ALERTS.read_text()).items():
        assert metric_problems(rule_expr(rule), families) == [], name


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = ALERTS_TEST.read_text()
    firing = set(re.findall(r"alertname: (\w+)\s*\n\s*exp_alerts:\s*\n\s*- exp_labels", tests))
    assert set(alert_rules(ALERTS.read_text())) <= firing
    families = contract()
    for series in re.findall(r"series: '([^']+)'", tests):
        metric = series.split("{", 1)[0]
        if metric not in {"up", "probe_success"}:
            assert metric_problems(metric, families) == [], series


def test_promtool_checks_rules_and_config() -> None:
    promtool = _tool("promtool")
    checked = _run(promtool, "check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules(ALERTS.read_text()))} rules found" in checked.stdout
    config = _run(promtool, "check", "config", PROMETHEUS)
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    result = _run(promtool, "test", "rules", ALERTS_TEST)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_compose_services() -> None:
    text = PROMETHEUS.read_text()
    for job, target in [
        ("fitrelay-relay", '"relay:9477"'),
        ("fitrelay-indexer", '"indexer:9477"'),
        ("fitrelay-readyz", "http://relay:9477/readyz"),
        ("fitrelay-readyz", "http://indexer:9477/readyz"),
    ]:
        assert f"job_name: {job}" in text and target in text, (job, target)
    assert "replacement: blackbox:9115" in text
    assert re.search(r"^\s+- alerts\.yml\b", text, re.M)


# ---- Grafana -----------------------------------------------------------------------------------


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    queries = [d["expr"] for d in _walk(dashboard["panels"]) if isinstance(d.get("expr"), str)]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def test_dashboard_is_a_complete_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & area, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= names


def test_dashboard_uses_contract_metrics_and_shows_all_of_them() -> None:
    families = contract()
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    for query in queries:
        assert metric_problems(query, families) == [], query
    used = set()
    for query in queries:
        for name in _METRIC.findall(query):
            for suffix in _SUFFIXES:
                if name.endswith(suffix) and name.removesuffix(suffix) in families:
                    name = name.removesuffix(suffix)
                    break
            used.add(name)
    missing = {name for name in families if name.startswith("fitrelay_")} - used
    assert not missing, f"families in the contract with no panel: {sorted(missing)}"
    text = "\n".join(queries)
    for quantile in ("0.5", "0.99"):
        for histogram in (
            "fitrelay_req_eose_seconds",
            "fitrelay_writer_commit_seconds",
            "fitrelay_writer_batch_events",
            "fitrelay_live_delivery_seconds",
        ):
            assert re.search(rf"histogram_quantile\({quantile}, [^\n]*{histogram}_bucket", text)


def test_promtool_accepts_every_dashboard_expression(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, compiles as a Prometheus rule."""
    promtool = _tool("promtool")
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    rules = []
    for i, query in enumerate(queries):
        expr = query.replace("$__rate_interval", "1m").replace("$instance", ".*")
        if expr.startswith("label_values("):
            expr = expr.removeprefix("label_values(").split(",", 1)[0]
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_grafana_provisioning_matches_compose() -> None:
    datasource = (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "url: http://prometheus:9090" in datasource and "type: prometheus" in datasource
    provider = (DEPLOY / "grafana/provisioning/dashboards/fitrelay.yml").read_text()
    path = re.search(r"path: (\S+)", provider)
    assert path is not None
    compose = COMPOSE.read_text()
    assert f"./grafana/dashboards:{path.group(1)}:ro" in compose
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in compose


def test_yaml_files_parse() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        document = yaml.safe_load(path.read_text())
        assert isinstance(document, dict), path
    compose = yaml.safe_load(COMPOSE.read_text())
    assert set(compose["services"]) == COMPOSE_SERVICES
    alerts = yaml.safe_load(ALERTS.read_text())
    parsed = {r["alert"]: r["expr"] for g in alerts["groups"] for r in g["rules"]}
    assert {k: " ".join(v.split()) for k, v in parsed.items()} == {
        k: " ".join(rule_expr(v).split()) for k, v in alert_rules(ALERTS.read_text()).items()
    }


# ---- compose and configuration -----------------------------------------------------------------


def test_compose_files_exist_and_ports_are_private() -> None:
    text = COMPOSE.read_text()
    for source in re.findall(r"^\s*- (\./[^:\s]+):", text, re.M):
        assert (DEPLOY / source).exists(), f"compose mounts missing {source}"
    assert "dockerfile: deploy/Dockerfile" in text and "context: .." in text
    published = re.findall(r'^\s*- "([^"]+)"\s*$', text, re.M)
    assert published, "no published ports found"
    for port in published:
        assert not port.endswith(":9477"), "the metrics port must not be published"
        assert port.startswith(("127.0.0.1:", "${FITRELAY_PUBLISH:-127.0.0.1:")), port
    assert "condition: service_healthy" in text
    assert re.search(r'command: \["fitrelay", "serve"', text)
    assert re.search(r'command: \["fitrelay", "index"', text)


def _compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and _run(docker, "compose", "version").returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip("docker compose (plugin) and docker-compose are not installed")


def test_docker_compose_config(tmp_path: Path) -> None:
    env_file = tmp_path / "empty.env"  # a developer's deploy/.env must not leak in
    env_file.write_text("")
    compose = [*_compose_command(), "--env-file", str(env_file)]
    env = {k: v for k, v in os.environ.items() if k not in {"FITRELAY_PUBLISH", "FITRELAY_IMAGE"}}
    env |= {"POSTGRES_PASSWORD": "compose-test", "GRAFANA_ADMIN_PASSWORD": "compose-test"}
    quiet = _run(*compose, "-f", COMPOSE, "config", "-q", env=env)
    assert quiet.returncode == 0, quiet.stderr
    services = _run(*compose, "-f", COMPOSE, "config", "--services", env=env)
    assert services.returncode == 0, services.stderr
    assert set(services.stdout.split()) == COMPOSE_SERVICES
    rendered = _run(*compose, "-f", COMPOSE, "config", env=env).stdout
    assert "postgresql://fitrelay:compose-test@postgres:5432/fitrelay" in rendered
    assert "127.0.0.1:7447:7447" in rendered
    del env["POSTGRES_PASSWORD"]
    missing = _run(*compose, "-f", COMPOSE, "config", "-q", env=env)
    assert missing.returncode != 0, "compose must refuse to start without POSTGRES_PASSWORD"
    assert "POSTGRES_PASSWORD" in missing.stderr


def test_mounted_configs_are_valid() -> None:
    from relay.config import load

    relay = load(DEPLOY / "config" / "relay.toml", env={})
    assert relay.indexer.enabled is False
    assert relay.relay.host == "0.0.0.0" and relay.relay.port == 7447
    assert relay.metrics.listen == "0.0.0.0:9477"
    assert relay.db.dsn == "", "the DSN (a secret) comes from FITRELAY_DB_DSN"
    indexer = load(DEPLOY / "config" / "indexer.toml", env={})
    assert indexer.metrics.listen == "0.0.0.0:9477"
    assert indexer.db.dsn == ""
    for path in (DEPLOY / "config").glob("*.toml"):
        assert tomllib.loads(path.read_text()).get("logging", {}).get("format") == "json"


# ---- Dockerfile --------------------------------------------------------------------------------


def _instruction(name: str) -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [m.strip() for m in re.findall(rf"^{name}\s+(.*)$", text, re.M)]


def test_dockerfile_builds_what_pyproject_packages() -> None:
    assert any("python:3.12-slim" in arg for arg in _instruction("ARG"))
    copied = {
        part
        for args in _instruction("COPY")
        if not args.startswith("--from")
        for part in args.split()[:-1]
    }
    for source in copied:
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in project["tool"]["setuptools"]["packages"]:
        assert package.split(".")[0] in copied, f"package {package} is not copied"
    assert project["project"]["readme"] in copied
    assert "fitrelay" in project["project"]["scripts"]


def test_dockerfile_runtime_settings() -> None:
    users = _instruction("USER")
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert set(" ".join(_instruction("EXPOSE")).split()) == {"7447", "9477"}
    assert json.loads(_instruction("CMD")[-1]) == ["fitrelay", "serve", "--host", "0.0.0.0"]
    env = " ".join(_instruction("ENV"))
    assert "FITRELAY_METRICS_LISTEN=0.0.0.0:9477" in env
    assert _instruction("STOPSIGNAL") == ["SIGTERM"]


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _healthcheck(port: int) -> int:
    healthcheck = _instruction("HEALTHCHECK")[-1]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert command[0] == "python", "the slim image has python, not curl"
    env = dict(os.environ, FITRELAY_METRICS_LISTEN=f"127.0.0.1:{port}")
    return _run(sys.executable, *command[1:], env=env).returncode


@pytest.mark.parametrize("status", [200, 503])
def test_dockerfile_healthcheck_reads_healthz(status: int) -> None:
    handler = type("Handler", (_Health,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = _healthcheck(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (code == 0) is (status == 200)


def test_dockerfile_healthcheck_fails_when_nothing_listens() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    port = server.server_address[1]
    server.server_close()
    assert _healthcheck(port) != 0


# ---- nginx -------------------------------------------------------------------------------------


def test_nginx_proxies_websockets_and_nip11() -> None:
    text = NGINX.read_text()
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{[^}]*default upgrade;", text)
    for directive in (
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header Host $host;",
        "proxy_buffering off;",
        "return 301 https://$host$request_uri;",
        "listen 443 ssl;",
        "server 127.0.0.1:7447;",
    ):
        assert directive in text, directive
    accept = re.findall(r"proxy_set_header Accept (\S+);", text)
    assert accept in ([], ["$http_accept"]), "NIP-11 needs the client's Accept header"
    timeout = re.search(r"proxy_read_timeout (\d+)([smh]?);", text)
    assert timeout is not None
    seconds = int(timeout.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[timeout.group(2)]
    assert seconds >= 300
    assert "9477" not in re.sub(r"#.*", "", text), "the metrics port must not be proxied"
    assert re.search(r"location ~ \^/\(metrics\|healthz\|readyz\)", text)


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = _tool("nginx")
    openssl = _tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = _run(
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=relay.example.org", "-keyout", key, "-out", cert,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    site = NGINX.read_text()
    site = site.replace("/etc/letsencrypt/live/relay.example.org/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/relay.example.org/privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    temp = tmp_path / "temp"
    temp.mkdir()
    paths = "\n".join(
        f"  {kind}_temp_path {temp};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n{paths}\n  include {tmp_path}/site.conf;\n}}\n"
    )
    result = _run(
        nginx, "-t", "-q", "-p", tmp_path, "-e", tmp_path / "error.log",
        "-c", tmp_path / "nginx.conf",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# ---- systemd -----------------------------------------------------------------------------------


def unit(path: Path) -> dict[str, list[str]]:
    """A unit file's [Service] and [Unit] keys, each with every value it is given."""
    keys: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


@pytest.mark.parametrize("command", sorted(UNITS))
def test_systemd_unit_is_hardened(command: str) -> None:
    keys = unit(UNITS[command])
    exec_start = keys["ExecStart"][0].split()
    assert exec_start[0].endswith("/fitrelay") and exec_start[1] == command
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DynamicUser": "yes",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "CapabilityBoundingSet": "",
    }.items():
        assert keys.get(key) == [value], f"{key}={value}"
    assert keys["User"] != ["root"]
    assert keys["EnvironmentFile"] == ["/etc/fitrelay/fitrelay.env"]
    assert int(keys["TimeoutStopSec"][0]) >= 30
    assert "ProcSubset" not in keys, "process_* metrics read /proc/stat"


def test_systemd_indexer_metrics_port_differs_from_the_relays() -> None:
    relay = " ".join(unit(UNITS["serve"]).get("Environment", []))
    indexer = " ".join(unit(UNITS["index"])["Environment"])
    assert "FITRELAY_METRICS_LISTEN" not in relay  # the default, 127.0.0.1:9477
    listen = re.search(r"FITRELAY_METRICS_LISTEN=127\.0\.0\.1:(\d+)", indexer)
    assert listen is not None, "the indexer's metrics must listen on loopback"
    # worker i of the relay serves its metrics on 9477 + i (at most 64 workers)
    assert int(listen.group(1)) not in range(9477, 9477 + 64)


@pytest.mark.parametrize("command", sorted(UNITS))
def test_systemd_analyze_verify(command: str, tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    # verify wants ExecStart's binary to exist: use this environment's fitrelay, or python.
    installed = Path(sys.executable).parent / "fitrelay"
    binary = installed if installed.exists() else Path(sys.executable)
    source = UNITS[command]
    copy = tmp_path / source.name
    copy.write_text(source.read_text().replace("/opt/fitrelay/bin/fitrelay", str(binary)))
    result = _run(analyze, "verify", copy)
    mentions = [
        line for line in (result.stdout + result.stderr).splitlines() if source.name in line
    ]
    assert result.returncode == 0 and not mentions, result.stdout + result.stderr
