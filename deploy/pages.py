"""What the pages need, shared by `make local` and `make deploy`: content types, cache headers, configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WEB_ROOT = ROOT / "web"
LANGUAGES = ROOT / "src" / "broadcast" / "data" / "languages.json"
SCOPES = "openid email profile"
CONFIG_NAME = "config.json"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # ES modules and audio worklets need a JavaScript type
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
# Pages revalidate on every load (a deploy shows at once); scripts and styles have no hashed
# names, so they are cached briefly; the configuration is never cached.
CACHE_CONTROL = {".html": "no-cache", CONFIG_NAME: "no-store"}
DEFAULT_CACHE_CONTROL = "public, max-age=300"


def cache_control(name: str) -> str:
    """The Cache-Control header a file of web/ is served with."""
    return CACHE_CONTROL.get(name, CACHE_CONTROL.get(Path(name).suffix, DEFAULT_CACHE_CONTROL))


def page_files(web_root: Path = WEB_ROOT) -> list[Path]:
    """The files a browser loads: web/ without its tests, in a stable order."""
    return sorted(
        p
        for p in web_root.rglob("*")
        if p.is_file() and "test" not in p.relative_to(web_root).parts[:1] and p.suffix in CONTENT_TYPES
    )


def page_config(
    websocket_url: str, listener_url: str, sign_in_base_url: str | None, client_id: str | None
) -> dict[str, Any]:
    """/config.json: where to connect, the listener link, the languages, and Cognito's managed-login endpoints."""
    config: dict[str, Any] = {
        "webSocketUrl": websocket_url,
        "listenerUrl": listener_url,
        "languages": json.loads(LANGUAGES.read_text())["languages"],
        "auth": None,
    }
    if sign_in_base_url and client_id:
        base = sign_in_base_url.rstrip("/")
        config["auth"] = {
            "authorizeUrl": f"{base}/oauth2/authorize",
            "tokenUrl": f"{base}/oauth2/token",
            "logoutUrl": f"{base}/logout",
            "clientId": client_id,
            "scopes": SCOPES,
        }
    return config
