"""REQUEST authorizer on $connect: a valid token authenticates, no token is anonymous, any other is refused."""

from __future__ import annotations

from typing import Any

from broadcast.auth import InvalidToken, TokenSettings, TokenVerifier
from broadcast.observability import logger

_verifier: TokenVerifier | None = None


def verifier() -> TokenVerifier:
    """The process-wide verifier (its JWKS cache survives warm invocations)."""
    global _verifier
    if _verifier is None:
        _verifier = TokenVerifier(TokenSettings.from_env())
    return _verifier


def _policy(principal: str, effect: str, resource: str, context: dict[str, str]) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context,
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point. Raising 'Unauthorized' makes API Gateway answer 401 to the handshake."""
    query = event.get("queryStringParameters") or {}
    token = query.get("token")
    resource = event.get("methodArn", "*")
    if token is None:
        return _policy("anonymous", "Allow", resource, {"authenticated": "false", "userId": ""})
    try:
        claims = verifier().verify(token)
    except InvalidToken as exc:
        # The reason is logged, never the token itself.
        logger.info("token refused", extra={"reason": str(exc)})
        raise Exception("Unauthorized") from None
    return _policy(claims["sub"], "Allow", resource, {"authenticated": "true", "userId": claims["sub"]})
