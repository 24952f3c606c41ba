"""The web side of the local stack: the pages in web/, their configuration, and Cognito's managed login emulated.

The speaker page signs in with the authorization-code flow with PKCE (S256), as Cognito's
managed login expects: `/oauth2/authorize`, then `/oauth2/token` with the code and its verifier,
then the refresh-token grant. Here `/oauth2/authorize` is a development form that asks only for
a name; codes are bound to their challenge and redirect URI, used once, and short-lived; tokens
are signed by the development key (local_stack/tokens.py). So the page runs the same code
locally and deployed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from deploy.pages import CONTENT_TYPES, SCOPES, WEB_ROOT, cache_control
from deploy.pages import page_config as _page_config
from local_stack import tokens

CODE_LIFETIME = 300

Response = tuple[HTTPStatus, dict[str, str], bytes]


def page_config(websocket_url: str, origin: str) -> dict[str, Any]:
    """What the pages read from /config.json; `make deploy` writes the same shape from the stack's outputs."""
    return _page_config(websocket_url, f"{origin}/", origin, tokens.CLIENT_ID)


def static_file(path: str) -> Response | None:
    """A file of web/ (index.html for /), with its content type; None when there is no such file."""
    relative = "index.html" if path in ("", "/") else path.lstrip("/")
    target = (WEB_ROOT / relative).resolve()
    if WEB_ROOT.resolve() not in target.parents or not target.is_file() or "/test/" in f"/{relative}":
        return None
    content_type = CONTENT_TYPES.get(target.suffix)
    if content_type is None:
        return None
    return HTTPStatus.OK, {"Content-Type": content_type, "Cache-Control": cache_control(relative)}, target.read_bytes()


def _json(status: HTTPStatus, payload: Any) -> Response:
    return status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, json.dumps(payload).encode()


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class _Grant:
    subject: str
    name: str
    challenge: str
    redirect_uri: str
    expires: float


class LocalSignIn:
    """Cognito's /oauth2/authorize and /oauth2/token, for development: a name is all it asks."""

    def __init__(self) -> None:
        self._codes: dict[str, _Grant] = {}
        self._refresh: dict[str, tuple[str, str]] = {}  # refresh token -> (subject, name)

    def authorize_form(self, query: str) -> Response:
        params = dict(parse_qsl(query))
        problem = self._check_request(params)
        if problem:
            return _json(HTTPStatus.BAD_REQUEST, {"error": "invalid_request", "error_description": problem})
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in (local development)</title>
<style>body{{font:18px system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}}
input,button{{font:inherit;padding:.6rem;width:100%;box-sizing:border-box;margin:.4rem 0}}
button{{background:#0b57d0;color:#fff;border:0;border-radius:.4rem}}</style></head>
<body><main><h1>Sign in</h1>
<p>Local development sign-in: no password. A deployed stack uses Cognito's managed login here.</p>
<form method="post" action="/oauth2/authorize">{hidden}
<label for="username">Your name</label>
<input id="username" name="username" autocomplete="username" required maxlength="64">
<button type="submit">Sign in</button></form></main></body></html>"""
        return HTTPStatus.OK, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}, body.encode()

    def authorize_submit(self, form: bytes) -> Response:
        params = dict(parse_qsl(form.decode("utf-8", errors="replace")))
        problem = self._check_request(params)
        name = params.get("username", "").strip()[:64]
        if problem or not name:
            return _json(HTTPStatus.BAD_REQUEST, {"error": "invalid_request", "error_description": problem or "name"})
        code = secrets.token_urlsafe(24)
        subject = str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-user:{name.lower()}"))
        self._codes[code] = _Grant(
            subject, name, params["code_challenge"], params["redirect_uri"], time.time() + CODE_LIFETIME
        )
        query = urlencode({"code": code, **({"state": params["state"]} if "state" in params else {})})
        separator = "&" if "?" in params["redirect_uri"] else "?"
        return HTTPStatus.FOUND, {"Location": f"{params['redirect_uri']}{separator}{query}"}, b""

    def token(self, form: bytes) -> Response:
        params = dict(parse_qsl(form.decode("utf-8", errors="replace")))
        if params.get("client_id") != tokens.CLIENT_ID:
            return _json(HTTPStatus.BAD_REQUEST, {"error": "invalid_client"})
        grant = params.get("grant_type")
        if grant == "authorization_code":
            found = self._codes.pop(params.get("code", ""), None)  # a code is good once
            if (
                found is None
                or found.expires < time.time()
                or found.redirect_uri != params.get("redirect_uri")
                or _s256(params.get("code_verifier", "")) != found.challenge
            ):
                return _json(HTTPStatus.BAD_REQUEST, {"error": "invalid_grant"})
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = (found.subject, found.name)
            return _json(HTTPStatus.OK, {**self._tokens(found.subject, found.name), "refresh_token": refresh})
        if grant == "refresh_token":
            known = self._refresh.get(params.get("refresh_token", ""))
            if known is None:
                return _json(HTTPStatus.BAD_REQUEST, {"error": "invalid_grant"})
            return _json(HTTPStatus.OK, self._tokens(*known))  # Cognito keeps the refresh token
        return _json(HTTPStatus.BAD_REQUEST, {"error": "unsupported_grant_type"})

    @staticmethod
    def _tokens(subject: str, name: str) -> dict[str, Any]:
        claims = {"cognito:username": name, "name": name}
        return {
            "id_token": tokens.issue(subject, token_use="id", **claims),  # noqa: S106 - a claim, not a secret
            "access_token": tokens.issue(subject, token_use="access", scope=SCOPES, username=name),  # noqa: S106
            "token_type": "Bearer",
            "expires_in": 3600,
        }

    @staticmethod
    def _check_request(params: dict[str, str]) -> str:
        """What Cognito would refuse: wrong client, not the code flow, no S256 challenge, a foreign redirect."""
        if params.get("client_id") != tokens.CLIENT_ID:
            return "unknown client_id"
        if params.get("response_type") != "code":
            return "response_type must be code"
        if params.get("code_challenge_method") != "S256" or len(params.get("code_challenge", "")) < 43:
            return "PKCE with code_challenge_method S256 is required"
        redirect = urlsplit(params.get("redirect_uri", ""))
        if redirect.scheme != "http" or redirect.hostname not in ("127.0.0.1", "localhost"):
            return "redirect_uri must be a local page"
        return ""
