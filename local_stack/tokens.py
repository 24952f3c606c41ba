"""The local token issuer: a development RSA key under .local/, its JWKS, and Cognito-shaped tokens.

The authorizer validates these through exactly the code path it uses for Cognito (PyJWKClient
fetching a JWKS over HTTP, RS256, issuer, token_use and client checks).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from local_stack.template import ROOT

KEY_DIR = Path(os.environ.get("LOCAL_STACK_DIR", ROOT / ".local"))
ISSUER = "https://local.broadcast.invalid/issuer"
CLIENT_ID = "local-app-client"
JWKS_PATH = "/.well-known/jwks.json"


@cache
def signing_key() -> Any:
    """The development private key, created on first use and kept in .local/dev-key.pem."""
    path = KEY_DIR / "dev-key.pem"
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    KEY_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    tmp.chmod(0o600)
    tmp.replace(path)  # atomic: a second process starting at the same time reads a whole key
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def key_id() -> str:
    """A kid derived from the public key, so a new key never shares the old one's kid."""
    public = signing_key().public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return uuid.uuid5(uuid.NAMESPACE_OID, public.hex()).hex[:16]


def jwks() -> dict[str, Any]:
    """The public key set the emulator serves at JWKS_PATH."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key().public_key()))
    jwk.update(kid=key_id(), alg="RS256", use="sig")
    return {"keys": [jwk]}


def issue(sub: str = "local-speaker", *, token_use: str = "id", lifetime: int = 3600, **claims: Any) -> str:
    """A token like a Cognito ID token (or access token with token_use='access') for `sub`."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "iss": ISSUER, "iat": now, "exp": now + lifetime, "token_use": token_use}
    payload["aud" if token_use == "id" else "client_id"] = CLIENT_ID
    payload.update(claims)
    return jwt.encode(payload, signing_key(), algorithm="RS256", headers={"kid": key_id()})


def main() -> None:
    parser = argparse.ArgumentParser(description="Print a speaker token for the local stack.")
    parser.add_argument("--sub", default="local-speaker", help="the token's subject (the speaker's user id)")
    parser.add_argument("--lifetime", type=int, default=3600, help="seconds until it expires (Cognito: 3600)")
    args = parser.parse_args()
    print(issue(args.sub, lifetime=args.lifetime))


if __name__ == "__main__":
    main()
