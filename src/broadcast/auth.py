"""Cognito JWT verification for the $connect REQUEST authorizer (PyJWT + PyJWKClient)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import jwt

LEEWAY_SECONDS = 30
MAX_TOKEN_CHARS = 8192


class InvalidToken(Exception):
    """The presented token is not acceptable; the handshake is refused (never downgraded to anonymous)."""


@dataclass(frozen=True)
class TokenSettings:
    """Which tokens are accepted: Cognito issuer, its JWKS and the app client id(s), comma-separated."""

    issuer: str
    jwks_url: str
    client_id: str

    @property
    def client_ids(self) -> frozenset[str]:
        """The accepted app clients: the web pages' client and the command line's, for example."""
        return frozenset(part.strip() for part in self.client_id.split(",") if part.strip())

    @classmethod
    def from_env(cls) -> TokenSettings:
        """Read JWT_ISSUER, JWKS_URL and JWT_CLIENT_ID; all three are required."""
        missing = [n for n in ("JWT_ISSUER", "JWKS_URL", "JWT_CLIENT_ID") if not os.environ.get(n)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(os.environ["JWT_ISSUER"], os.environ["JWKS_URL"], os.environ["JWT_CLIENT_ID"])


class TokenVerifier:
    """Verifies RS256 Cognito ID and access tokens; keys come from a cached PyJWKClient."""

    def __init__(self, settings: TokenSettings, jwks_client: jwt.PyJWKClient | None = None) -> None:
        self.settings = settings
        # PyJWKClient caches the key set and refetches it when it meets an unknown kid.
        self.jwks = jwks_client or jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=3600, timeout=5)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims if it is valid, else InvalidToken (whatever the reason)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("token missing or too long")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                raise InvalidToken("only RS256 is accepted")
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=["RS256"],
                issuer=self.settings.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "sub", "token_use"], "verify_aud": False},
            )
        except InvalidToken:
            raise
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise InvalidToken(type(exc).__name__) from exc
        self._check_audience(claims)
        return claims

    def _check_audience(self, claims: dict[str, Any]) -> None:
        # Cognito ID tokens name the app client in `aud`; access tokens carry `client_id` instead.
        use = claims.get("token_use")
        if use == "id":
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if not self.settings.client_ids.intersection(a for a in audiences if isinstance(a, str)):
                raise InvalidToken("wrong audience")
        elif use == "access":
            if claims.get("client_id") not in self.settings.client_ids:
                raise InvalidToken("wrong client")
        else:
            raise InvalidToken("wrong token_use")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidToken("no subject")
