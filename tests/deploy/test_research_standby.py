"""deploy/compose.research.yaml: the hot standby analysts query, beside compose.yaml."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.deploy.test_deploy_files import COMPOSE, COMPOSE_SERVICES, DEPLOY, _compose_command, _run

RESEARCH = DEPLOY / "compose.research.yaml"


def _settings(command: list[str]) -> dict[str, str]:
    values = [command[i + 1] for i, arg in enumerate(command) if arg == "-c"]
    return dict(value.split("=", 1) for value in values)


def test_the_standby_extends_the_stack_with_the_research_trade_off() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    base = yaml.safe_load(COMPOSE.read_text())
    research = yaml.safe_load(RESEARCH.read_text())
    services = research["services"]
    assert set(services) - set(base["services"]) == {"postgres-research"}
    assert set(services) <= COMPOSE_SERVICES | {"postgres-research"}
    standby = services["postgres-research"]
    assert standby["image"] == base["services"]["postgres"]["image"], "one major version"
    settings = _settings(standby["command"])
    assert settings["hot_standby"] == "on"
    assert settings["hot_standby_feedback"] == "off"  # never holds back VACUUM on the primary
    assert settings["max_standby_streaming_delay"].endswith("min")  # analyses not cancelled
    assert standby["ports"] == ["127.0.0.1:5433:5432"], "only on the host's loopback"
    assert standby["depends_on"]["postgres"]["condition"] == "service_healthy"
    for spec in [*standby["volumes"], *services["postgres"]["volumes"]]:
        source = spec.split(":", 1)[0]
        if source.startswith("./"):
            assert (DEPLOY / source).is_file(), f"compose.research.yaml mounts missing {source}"
    assert "REPLICATION_PASSWORD:?" in RESEARCH.read_text(), "no default password"


def test_the_scripts_are_valid_shell() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    for script in ("replication.sh", "standby.sh"):
        path = DEPLOY / "postgres" / script
        checked = _run(sh, "-n", path)
        assert checked.returncode == 0, checked.stderr
    standby = (DEPLOY / "postgres" / "standby.sh").read_text()
    assert re.search(r"pg_basebackup .*-R", standby) and 'exec postgres "$@"' in standby
    assert "REPLICATION" in (DEPLOY / "postgres" / "replication.sh").read_text()


def test_docker_compose_config_with_the_standby(tmp_path: Path) -> None:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    compose = [*_compose_command(), "--env-file", str(env_file), "-f", COMPOSE, "-f", RESEARCH]
    env = {
        "PATH": (shutil.which("sh") and "/usr/bin:/bin") or "",
        "POSTGRES_PASSWORD": "compose-test",
        "GRAFANA_ADMIN_PASSWORD": "compose-test",
        "REPLICATION_PASSWORD": "compose-test",
    }
    quiet = _run(*compose, "config", "-q", env=env)
    assert quiet.returncode == 0, quiet.stderr
    del env["REPLICATION_PASSWORD"]
    missing = _run(*compose, "config", "-q", env=env)
    assert missing.returncode != 0 and "REPLICATION_PASSWORD" in missing.stderr
