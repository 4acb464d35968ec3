"""``vstudio up --lan``: the LAN page and its QR code are printed, and the page answers there.

The LAN address is forced to a loopback one (``VSTUDIO_LAN_ADDRESS=127.0.0.2``), so the test
sends nothing to a real network: the server listens on every interface, this test reaches it
on 127.0.0.2 exactly as a phone would on 192.168.x.y."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.loopback import free_port
from tests.test_up_parts import modules
from vstudio_cli.lan import qr_text

pytestmark = pytest.mark.slow


def test_up_lan_prints_the_lan_page_and_its_qr_code(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "VSTUDIO_DATA_DIR": str(tmp_path), "VSTUDIO_LAN_ADDRESS": "127.0.0.2"}
    for name in ("VSTUDIO_REDIS_URL", "VSTUDIO_CONFIG", "VSTUDIO_PORT"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "vstudio_cli.main", "up", "--lan", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "COLUMNS": "200"},
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("(scan with"):
                break
        said = [line for line in lines if line.startswith("Phones on this network: ")]
        assert said, "\n".join(lines)
        page = said[0].removeprefix("Phones on this network: ")
        assert page.startswith(f"http://127.0.0.2:{port}/s/")
        start = lines.index(said[0]) + 1
        drawn = "\n".join(lines[start : start + len(qr_text(page).splitlines())])
        assert drawn == qr_text(page)
        assert modules(drawn) == modules(qr_text(page))
        with urllib.request.urlopen(page, timeout=5) as response:  # 127.0.0.2 is loopback
            assert response.status == 200
    finally:
        down = subprocess.run(  # stops a foreground up from another terminal, as Ctrl-C would
            [sys.executable, "-m", "vstudio_cli.main", "down", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if down.returncode != 0:
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    assert down.returncode == 0, down.stderr
