"""WSS served directly: ``vstudio serve --certfile --keyfile`` with a certificate from a test CA.

``trustme`` makes a throwaway CA and a server certificate for 127.0.0.1; a real ``vstudio serve``
subprocess uses them, and clients that trust that CA use the ticket flow over ``https://`` and
``wss://``. A plain-HTTP client and a client that does not trust the CA both fail.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from server.identity.auth import mint_token

trustme = pytest.importorskip("trustme")

SECRET = "test-secret-for-the-tls-server-tests"


@dataclass
class TlsServer:
    process: subprocess.Popen[bytes]
    base_url: str
    client_ssl: ssl.SSLContext
    out: Path

    def token(self, user_id: str, role: str = "viewer") -> str:
        return mint_token(SECRET, user_id=user_id, role=role)


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


def cert_files(ca: Any, folder: Path) -> tuple[Path, Path]:
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    server_cert.private_key_pem.write_to_path(str(keyfile))
    with certfile.open("wb") as out:  # the leaf, then the chain
        for blob in server_cert.cert_chain_pems:
            out.write(blob.bytes())
    return certfile, keyfile


def start_server(
    redis_url: str, folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        "VSTUDIO_REDIS_URL": redis_url,
        "VSTUDIO_JWT_SECRET": SECRET,
        "VSTUDIO_DATA_DIR": str(folder / "data"),
        "VSTUDIO_LOG_JSON": "1",
        **(env or {}),
    }
    full_env.pop("VSTUDIO_CONFIG", None)
    command = [sys.executable, "-m", "vstudio_cli.main", "serve", "--port", "0", *args]
    with (folder / "out.txt").open("wb") as out, (folder / "err.txt").open("wb") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, env=full_env)


def wait_listening(process: subprocess.Popen[bytes], folder: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in (folder / "out.txt").read_text().splitlines():
            if "listening on " in line:
                return line.split("listening on ", 1)[1].split()[0]
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"no listening line: {(folder / 'err.txt').read_text()}")


@pytest.fixture
def tls_server(
    redis_url: str, tmp_path: Path, ca: Any, request: pytest.FixtureRequest
) -> Iterator[TlsServer]:
    certfile, keyfile = cert_files(ca, tmp_path)
    workers = getattr(request, "param", 1)
    process = start_server(
        redis_url,
        tmp_path,
        "--certfile",
        str(certfile),
        "--keyfile",
        str(keyfile),
        "--workers",
        str(workers),
    )
    try:
        base_url = wait_listening(process, tmp_path)
        client_ssl = ssl.create_default_context()
        ca.configure_trust(client_ssl)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    base_url + "/healthz", timeout=1, context=client_ssl
                ) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield TlsServer(process, base_url, client_ssl, tmp_path)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def ticket_flow_over_wss(server: TlsServer, *, fresh: bool = False) -> None:
    """Create and start a session, get a ticket over https, read session.state over wss and
    have a ping answered; ``fresh``: the WebSocket on a TLS connection of its own, as a browser
    opens it (the guard's front takes it), else after the ticket on a kept-alive one."""
    artist_id = f"artist-{uuid.uuid4().hex[:8]}"
    artist = {"Authorization": f"Bearer {server.token(artist_id, 'artist')}"}
    viewer = {"Authorization": f"Bearer {server.token('fan-1')}"}
    connector = aiohttp.TCPConnector(ssl=server.client_ssl)
    async with aiohttp.ClientSession(connector=connector) as http:
        url = server.base_url + "/v1/vstudio/sessions"
        async with http.post(url, json={"title": "TLS"}, headers=artist) as answer:
            assert answer.status == 201, await answer.text()
            session = await answer.json()
        async with http.post(f"{url}/{session['id']}/start", headers=artist) as answer:
            assert answer.status == 200, await answer.text()
        async with http.post(
            server.base_url + "/v1/vstudio/ticket",
            json={"sessionId": session["id"], "role": "viewer"},
            headers=viewer,
        ) as answer:
            assert answer.status == 200, await answer.text()
            ticket = (await answer.json())["ticket"]
        wss = server.base_url.replace("https://", "wss://") + "/v1/vstudio/ws"
        own = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=server.client_ssl))
        async with own, (own if fresh else http).ws_connect(wss, params={"ticket": ticket}) as ws:
            frame = orjson.loads((await ws.receive(timeout=5)).data)
            assert frame["type"] == "session.state"
            await ws.send_json({"type": "ping", "requestId": "over-tls"})
            while frame.get("requestId") != "over-tls":
                frame = orjson.loads((await ws.receive(timeout=5)).data)
            assert frame["type"] == "pong"


@pytest.mark.parametrize("fresh", [False, True], ids=["after-a-ticket", "first-request"])
async def test_wss_and_https_with_a_trusted_certificate(tls_server: TlsServer, fresh: bool) -> None:
    assert tls_server.base_url.startswith("https://127.0.0.1:")
    await ticket_flow_over_wss(tls_server, fresh=fresh)


async def test_plain_http_and_untrusting_clients_fail(tls_server: TlsServer) -> None:
    plain = tls_server.base_url.replace("https://", "http://") + "/healthz"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(plain, timeout=aiohttp.ClientTimeout(total=5)) as answer:
                await answer.read()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # does not trust the CA
            async with http.get(tls_server.base_url + "/healthz") as answer:
                await answer.read()
        wss = tls_server.base_url.replace("https://", "wss://") + "/v1/vstudio/ws?ticket=x"
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await http.ws_connect(wss)


@pytest.mark.slow
@pytest.mark.parametrize("tls_server", [2], indirect=True)
async def test_wss_with_several_workers(tls_server: TlsServer) -> None:
    for _ in range(4):  # the kernel spreads the connections over both processes
        await ticket_flow_over_wss(tls_server)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--certfile", "/nonexistent/cert.pem"], "cannot read"),
        (["--keyfile", "/nonexistent/key.pem"], "needs --certfile"),
        (["--certfile", "{cert}", "--keyfile", "{cert}"], "cannot use certfile"),
    ],
)
def test_unusable_certificate_files_exit_2(
    redis_url: str, tmp_path: Path, ca: Any, args: list[str], words: str
) -> None:
    certfile, _ = cert_files(ca, tmp_path)
    args = [arg.replace("{cert}", str(certfile)) for arg in args]
    process = start_server(redis_url, tmp_path / "run", *args)
    assert process.wait(30) == 2
    err = (tmp_path / "run" / "err.txt").read_text()
    assert words in err and "Traceback" not in err, err


def test_config_show_lists_the_certificate_settings(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "VSTUDIO_CERTFILE": str(tmp_path / "c.pem"),
        "VSTUDIO_DATA_DIR": str(tmp_path),
    }
    env.pop("VSTUDIO_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "vstudio_cli.main", "config", "show", "--part", "server", "--json"],
        capture_output=True,
        env=env,
        check=True,
    ).stdout
    rows = {row["name"]: row for row in orjson.loads(out)["settings"]}
    assert rows["certfile"]["value"] == str(tmp_path / "c.pem")
    assert rows["certfile"]["source"] == "env VSTUDIO_CERTFILE"
    assert rows["keyfile"]["value"] in (None, "None", "")


def test_the_page_client_speaks_wss_on_an_https_page() -> None:
    client_js = Path(__file__).resolve().parents[1] / "server/web/static/js/client.js"
    assert 'location.protocol === "https:" ? "wss:" : "ws:"' in client_js.read_text()
