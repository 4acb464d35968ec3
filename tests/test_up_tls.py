"""``vstudio up --tls``: a self-signed pair made once in the data folder, https and wss served."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from tests.support.loopback import free_port
from tests.test_up import start_up, stop
from vstudio_cli.client import VStudioClient
from vstudio_cli.tls import names_for, self_signed_pair


def sans(cert: Path) -> list[str]:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(value) for value in names.get_values_for_type(x509.DNSName)] + [
        str(value) for value in names.get_values_for_type(x509.IPAddress)
    ]


def test_the_pair_covers_local_names_and_is_kept(tmp_path: Path) -> None:
    names = names_for("127.0.0.1")
    assert {"localhost", "127.0.0.1"} <= set(names)
    cert, key, made = self_signed_pair(tmp_path, names)
    assert made and key.stat().st_mode & 0o777 == 0o600
    assert set(names) <= set(sans(cert))
    first = cert.read_bytes()
    assert self_signed_pair(tmp_path, names)[2] is False  # reused
    assert cert.read_bytes() == first
    # a name the pair lacks (say, serving on another address) makes a new one
    _, _, made = self_signed_pair(tmp_path, [*names, "10.1.2.3"])
    assert made and "10.1.2.3" in sans(cert)
    # it serves: a client that trusts the certificate file verifies the server by name
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    ssl.create_default_context(cafile=str(cert))


def test_an_expiring_or_broken_pair_is_made_again(tmp_path: Path) -> None:
    names = ["localhost", "127.0.0.1"]
    cert, key, _ = self_signed_pair(tmp_path, names)
    key.write_text("garbage")
    assert self_signed_pair(tmp_path, names)[2] is True
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    left = loaded.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=390) < left < datetime.timedelta(days=398)


def test_listening_everywhere_adds_no_wildcard_address() -> None:
    assert "0.0.0.0" not in names_for("0.0.0.0")
    assert "10.9.8.7" in names_for("10.9.8.7")


@pytest.mark.slow
async def test_up_tls_serves_https_and_wss_and_reuses_its_certificate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    process, summary = start_up(data, port, "--tls")
    try:
        assert summary["url"] == f"https://127.0.0.1:{port}"
        assert summary["ws"] == f"wss://127.0.0.1:{port}/v1/vstudio/ws"
        certfile = Path(summary["certfile"])
        assert certfile.parent == data / "tls"
        trust = ssl.create_default_context(cafile=str(certfile))
        connector = aiohttp.TCPConnector(ssl=trust)
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.get(summary["page"]) as response:
                assert response.status == 200
            client = VStudioClient(summary["url"], http=http)
            await client.login("viewer", summary["logins"]["viewer"])
            async with client.live(summary["session"]) as live:
                state = await live.wait_for("session.state")
                assert state["type"] == "session.state"
        async with aiohttp.ClientSession() as http:  # plain http to the TLS port fails
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    await response.read()
    finally:
        assert stop(process) == 0
    first = certfile.read_bytes()
    process, again = start_up(data, free_port(), "--tls")
    try:
        assert Path(again["certfile"]).read_bytes() == first  # kept and reused
    finally:
        assert stop(process) == 0
