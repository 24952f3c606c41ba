"""make local PARAMS="JwtIssuer=... JwksUrl=... JwtClientId=...": the local stack verifies that issuer's tokens."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import websockets

from local_stack import tokens
from local_stack.process import LocalStackProcess
from tests.integration.wire import Wire
from tests.jwt_keys import CLIENT_ID, ISSUER, KeySet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KeySet, str]]:
    """Another issuer's key set, its JWKS served over HTTP on loopback (as Cognito serves a pool's)."""
    keys = KeySet(tmp_path_factory.mktemp("issuer"))
    body = json.dumps(keys.jwks).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield keys, f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()


@pytest.fixture(scope="module")
def external_stack(issuer: tuple[KeySet, str]) -> Iterator[LocalStackProcess]:
    _, jwks_url = issuer
    running = LocalStackProcess(params={"JwtIssuer": ISSUER, "JwksUrl": jwks_url, "JwtClientId": CLIENT_ID})
    yield running
    running.stop()


async def create_with(url: str, token: str) -> dict[str, Any]:
    wire = await Wire.open(url, token)
    try:
        return await wire.call({"action": "createSession", "sourceLanguage": "en"}, "sessionCreated")
    finally:
        await wire.close()


@pytest.mark.parametrize("token_use", ["id", "access"])
def test_external_issuer_id_and_access_tokens_accepted(
    external_stack: LocalStackProcess, issuer: tuple[KeySet, str], token_use: str
) -> None:
    keys, _ = issuer
    created = asyncio.run(create_with(external_stack.url, keys.token(token_use)))
    assert created["type"] == "sessionCreated"


@pytest.mark.parametrize(
    "make_token",
    [
        lambda keys: tokens.issue("dev-speaker"),  # the development key: not this issuer
        lambda keys: keys.token("id", aud="another-client"),
        lambda keys: keys.token("access", client_id="another-client"),
        lambda keys: keys.token("id", iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"),
    ],
)
def test_external_issuer_other_tokens_refused(
    external_stack: LocalStackProcess, issuer: tuple[KeySet, str], make_token: Any
) -> None:
    keys, _ = issuer

    async def handshake() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{external_stack.url}?token={make_token(keys)}")
        assert refused.value.response.status_code in (401, 403)

    asyncio.run(handshake())


def test_external_issuer_is_in_env_file(issuer: tuple[KeySet, str], tmp_path: Path) -> None:
    _, jwks_url = issuer
    env_file = tmp_path / "env.json"
    params = {"JwtIssuer": ISSUER, "JwksUrl": jwks_url, "JwtClientId": CLIENT_ID}
    running = LocalStackProcess(params=params, env_file=env_file)
    try:
        authorizer = json.loads(env_file.read_text())["AuthorizerFunction"]
        assert (authorizer["JWT_ISSUER"], authorizer["JWKS_URL"], authorizer["JWT_CLIENT_ID"]) == (
            ISSUER,
            jwks_url,
            CLIENT_ID,
        )
    finally:
        running.stop()
