"""wss:// served by the relay itself (relay.tls_cert / relay.tls_key), checked by a client
that verifies the certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from relay.app import Relay
from relay.config import ConfigError, load
from tests.client import RawClient
from tests.conftest import relay_config
from tests.signer import Keys


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key),
         "-out", str(cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_wss_with_a_verified_certificate(
    start_relay: Any, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    relay: Relay = await start_relay(relay_config(tls_cert=str(cert), tls_key=str(key)))
    trusting = ssl.create_default_context(cafile=str(cert))
    client = await RawClient.open(f"wss://localhost:{relay.port}", ssl=trusting)
    try:
        event = Keys(1).sign(1, "over tls")
        assert (await client.publish(event))[2] is True
        assert [e["id"] for e in await client.req("q", {"ids": [event["id"]]})] == [event["id"]]
    finally:
        await client.close()
    # A client that does not trust the certificate refuses the connection.
    with pytest.raises(ssl.SSLCertVerificationError):
        await RawClient.open(f"wss://localhost:{relay.port}", ssl=ssl.create_default_context())


def test_certificate_and_key_go_together(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[relay]\ntls_cert = "/etc/cert.pem"\n')
    with pytest.raises(ConfigError, match=r"tls_cert and relay\.tls_key"):
        load(path, env={})
