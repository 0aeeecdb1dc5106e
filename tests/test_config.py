"""Configuration loading, precedence and validation."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from relay.config import Config, ConfigError, load

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_lists_every_key_with_its_default() -> None:
    assert load(ROOT / "config.toml", env={}) == Config()
    tree = tomllib.loads((ROOT / "config.toml").read_text())
    assert tree == msgspec.to_builtins(Config())


def test_precedence(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[relay]\nport = 8000\nhost = "0.0.0.0"\n[db]\ndsn = "postgresql://file"\n')
    config = load(path, env={"FITRELAY_PORT": "9000", "FITRELAY_DB_DSN": "postgresql://env"})
    assert config.relay.port == 9000
    assert config.relay.host == "0.0.0.0"
    assert config.db.dsn == "postgresql://env"
    config = load(
        path,
        env={"FITRELAY_PORT": "9000"},
        overrides={("relay", "port"): 9100, ("db", "data_dir"): None},
    )
    assert config.relay.port == 9100
    assert config.db.data_dir == "./var"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[relay]\nport = 70000\n", {}, "relay.port must be between"),
        ("[relay]\nport = 'x'\n", {}, "Expected `int`"),
        ("[relay]\nbogus = 1\n", {}, "unknown field `bogus`"),
        ("[relay.limits]\nmax_limit = -1\n", {}, "must not be negative"),
        ("[relay]\nevent_cache_bytes = -1\n", {}, "0 turns it off"),
        ("[relay.limits]\ndefault_limit = 10\nmax_limit = 5\n", {}, "default_limit"),
        ("[db]\npool_min = 5\npool_max = 2\n", {}, "db.pool_min"),
        ("[relay.rate_limits.ip]\nreq_per_second = -1\n", {}, "req_per_second must not be"),
        ("[relay.rate_limits]\nmax_buckets = 0\n", {}, "max_buckets >= 1"),
        ("[relay]\ntrusted_proxies = ['10.0.0.0/33']\n", {}, "not an address or CIDR"),
        ("[relay.write_policy]\non_failure = 'maybe'\n", {}, "reject or accept"),
        ("[relay.write_policy]\nplugin = 'a \"b'\n", {}, "not a command line"),
        ("[db]\npool_wait_ms = 0\n", {}, "db.pool_wait_ms"),
        ("[relay.limits]\nmax_queries_in_flight = 0\n", {}, "max_queries_in_flight"),
        ("[relay]\nanswer_buffer_bytes = 0\n", {}, "answer_buffer_bytes"),
        ("not toml [", {}, "c.toml"),
        ("", {"FITRELAY_PORT": "eighty"}, "FITRELAY_PORT must be an integer"),
        ("[policy]\npreset = 'gym'\n", {}, "policy.preset must be one of fitness"),
        ("[policy]\nkinds_deny = [70000]\n", {}, "policy.kinds_deny must hold kinds"),
        ("[policy]\npubkeys_allow = ['npub1x']\n", {}, "64 lowercase hex"),
        ("[policy]\nmin_pow_difficulty = 300\n", {}, "min_pow_difficulty"),
        ("[auth]\nrequired = 'writes'\n", {}, "need relay.public_url"),
        ("[auth]\nkinds = [1301]\n", {}, "need relay.public_url"),
        ("[relay]\npublic_url = 'https://x'\n[auth]\nrequired = 'all'\n", {}, "ws:// or wss://"),
        ("[relay]\npublic_url = 'wss://x'\n[auth]\nrequired = 'some'\n", {}, "auth.required"),
        ("[relay]\npublic_url = 'wss://x'\n[auth]\nwindow_seconds = 0\n", {}, "at least 1"),
        ("[fetcher]\nupstreams = ['ws://127.0.0.1:7777']\n", {}, "fetcher.allow_loopback"),
        ("[fetcher]\nupstreams = ['https://relay.example']\n", {}, "not a ws:// or wss://"),
        ("[fetcher]\nconcurrency = 0\n", {}, "fetcher.concurrency"),
        ("[fetcher]\ntimeout_seconds = 0\n", {}, "fetcher.timeout_seconds"),
        ("[fetcher]\nretry_base_seconds = 10\nretry_max_seconds = 5\n", {}, "retry_max"),
        ("[db]\ndsn = 'postgresql:///a'\nread_dsns = ['postgresql:///a']\n", {}, "not the primary"),
        ("[db]\nread_dsns = ['postgresql:///b', 'postgresql:///b']\n", {}, "distinct standbys"),
        ("[db]\nreplica_poll_ms = 0\n", {}, "replica_poll_ms must be at least 1"),
        ("[db]\nreplica_poll_ms = 500\nreplica_retry_max_ms = 100\n", {}, "retry_max_ms"),
    ],
)
def test_errors_name_the_problem(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(path, env=env)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml", env={})


def test_loopback_upstreams_need_allow_loopback(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[fetcher]\nallow_loopback = true\nupstreams = ['ws://127.0.0.1:7777/']\n")
    assert load(path, env={}).fetcher.upstreams == ["ws://127.0.0.1:7777/"]
