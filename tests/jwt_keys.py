"""An RSA key pair and a JWKS made in the test run, and a token factory shaped like Cognito's."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool"
CLIENT_ID = "test-app-client"
KID = "test-key-1"


class KeySet:
    """A signing key, its JWKS on disk (read through a file:// URL), and tokens signed with it."""

    def __init__(self, directory: Path) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update(kid=KID, alg="RS256", use="sig")
        self.jwks_path = directory / "jwks.json"
        self.jwks_path.write_text(json.dumps({"keys": [jwk]}))

    @property
    def jwks(self) -> dict[str, Any]:
        return json.loads(self.jwks_path.read_text())

    def jwks_client(self) -> jwt.PyJWKClient:
        """A real PyJWKClient (cache, kid lookup) whose fetch reads this key set instead of the network."""
        keyset = self

        class _Client(jwt.PyJWKClient):
            fetches = 0

            def fetch_data(self) -> Any:
                type(self).fetches += 1
                return keyset.jwks

        return _Client("https://jwks.invalid/.well-known/jwks.json", cache_keys=True)

    def claims(self, token_use: str = "id", **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "iat": now, "exp": now + 3600, "token_use": token_use}
        if token_use == "id":
            claims["aud"] = CLIENT_ID
        else:
            claims["client_id"] = CLIENT_ID
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, token_use: str = "id", *, kid: str = KID, **overrides: Any) -> str:
        return jwt.encode(
            self.claims(token_use, **overrides), self.private_key, algorithm="RS256", headers={"kid": kid}
        )
