"""``vstudio token check`` and ``vstudio session apply`` with requiredTokens, as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.ethrpc import EthNode
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory

pytestmark = pytest.mark.slow


@pytest.fixture
async def node() -> AsyncIterator[EthNode]:
    async with EthNode(chain_id=1) as running:
        yield running


async def vstudio(server: LiveServer, token: str, *args: str) -> tuple[int, str, str]:
    """Run ``vstudio ARGS --server --token`` without blocking the loop the node answers on."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VSTUDIO_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vstudio_cli.main",
        *args,
        "--server",
        server.base_url,
        "--token",
        token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "XDG_CONFIG_HOME": "/nonexistent", "COLUMNS": "200"},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_apply_with_required_tokens_then_check_wallets(
    server_factory: ServerFactory, node: EthNode, tmp_path: Path
) -> None:
    server = server_factory(VSTUDIO_ETH_RPC_URL=node.url)
    coin, items = "0x" + secrets.token_hex(20), "0x" + secrets.token_hex(20)
    holder, other = "0x" + secrets.token_hex(20), "0x" + secrets.token_hex(20)
    node.erc20(coin, decimals=6, balances={holder: 1_500_000, other: 1_499_999})
    node.erc1155(items, balances={(holder, 7): 1, (other, 7): 1})
    spec = tmp_path / "gated.toml"
    spec.write_text(
        '[session]\ntitle = "Holders night"\nlive = true\n'
        f'requiredTokens = [{{contractAddress = "{coin}", minBalance = 1.5}},'
        f' {{contractAddress = "{items}", minBalance = 1, tokenId = 7, chainId = 1}}]\n\n'
        '[[polls]]\nquestion = "Holders pick the encore?"\noptions = ["A", "B"]\ngated = true\n'
    )
    artist = server.token(f"artist-{secrets.token_hex(4)}", "artist")
    code, out, err = await vstudio(server, artist, "session", "apply", str(spec), "--json")
    assert code == 0, out + err
    applied = json.loads(out)
    sid = applied["session"]["id"]
    assert applied["session"]["requiredTokens"][1] == {
        "contractAddress": items,
        "minBalance": 1,
        "chainId": 1,
        "tokenId": 7,
    }
    status, polls = await server.call("GET", f"/v1/vstudio/sessions/{sid}/polls", token=artist)
    assert status == 200 and polls["activePoll"]["gated"] is True

    code, out, err = await vstudio(
        server, artist, "token", "check", holder, "--session", sid, "--json"
    )
    assert code == 0, out + err
    verdict = json.loads(out)
    assert verdict["passed"] is True
    assert [check["balanceTokens"] for check in verdict["checks"]] == ["1.5", "1"]
    assert verdict["checks"][0]["decimals"] == 6 and verdict["checks"][1]["standard"] == "erc1155"

    code, out, err = await vstudio(server, artist, "token", "check", other, "--session", sid)
    assert code == 1, out + err
    assert "does not pass" in out and "is below the minimum 1.5" in out

    viewer = server.token("just-a-viewer")
    code, out, err = await vstudio(server, viewer, "token", "check", holder, "--session", sid)
    assert code == 7 and "artist and producers" in err
    code, out, err = await vstudio(server, artist, "token", "check", holder, "--session", "nope")
    assert code == 4
