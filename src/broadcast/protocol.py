"""The wire protocol in one place: message shapes, field rules and the error envelope (PROTOCOL.md)."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from broadcast import clock
from broadcast.errors import (
    BroadcastError,
    InvalidAction,
    InvalidParameters,
    PayloadTooLarge,
    RateLimitExceeded,
    UnsupportedLanguage,
)

SESSION_ID_PATTERN = re.compile(r"^[a-z]+-[a-z]+-[0-9]{3}$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}$")
MAX_AUDIO_CHARS = 24_576
MAX_SESSION_ID_CHARS = 64
ROLES = ("speaker", "listener")
# The one audio format every client sends and plays (PROTOCOL.md section 2); a later one (Opus)
# would be another value, chosen at createSession.
AUDIO_FORMAT = "pcm_s16le/16000/1"
AUDIO_FORMATS = frozenset({AUDIO_FORMAT})

# The fields each action may carry besides `action`; anything else is INVALID_PARAMETERS, so a
# typo such as `sessionID` is reported instead of silently ignored.
ACTION_FIELDS: dict[str, frozenset[str]] = {
    "createSession": frozenset({"sourceLanguage", "audioFormat"}),
    "joinSession": frozenset({"sessionId", "targetLanguage"}),
    "refreshConnection": frozenset({"sessionId", "role", "targetLanguage", "resumeToken"}),
    "heartbeat": frozenset(),
    "sendAudio": frozenset({"seq", "audio"}),
    "getSessionStatus": frozenset(),
    "endSession": frozenset(),
}


@cache
def supported_languages() -> frozenset[str]:
    """ISO 639-1 codes the product supports, kept as data in data/languages.json."""
    data = json.loads(resources.files("broadcast").joinpath("data/languages.json").read_text("utf-8"))
    return frozenset(data["languages"])


def message(type_: str, **fields: Any) -> dict[str, Any]:
    """A server-to-client message: `type`, `timestamp` (epoch ms) and the given fields."""
    return {"type": type_, "timestamp": clock.now_ms(), **fields}


def error_message(error: BroadcastError, *, action: str | None, request_id: str | None) -> dict[str, Any]:
    """The `error` envelope for a typed error; never carries internals, only the error's own message."""
    body = message("error", code=error.code, status=error.status, message=error.message, requestId=request_id or "")
    if action:
        body["action"] = action
    if isinstance(error, RateLimitExceeded):
        body["retryAfterSeconds"] = error.retry_after_seconds
    return body


def parse_body(raw: str | None) -> dict[str, Any]:
    """The frame as a JSON object, or INVALID_ACTION when it is not JSON or not an object."""
    if not raw:
        raise InvalidAction("frame is empty")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidAction("frame is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidAction("frame must be a JSON object")
    return body


def action_of(body: dict[str, Any]) -> str | None:
    """The frame's action when it is a short string, else None (safe to echo back)."""
    action = body.get("action")
    if isinstance(action, str) and 0 < len(action) <= 64 and action.isprintable():
        return action
    return None


def reject_unknown_fields(body: dict[str, Any], action: str | None) -> None:
    """INVALID_PARAMETERS when a known action carries fields it does not define."""
    allowed = ACTION_FIELDS.get(action or "")
    if allowed is None:
        return
    unknown = [k for k in body if k != "action" and k not in allowed]
    if unknown:
        shown = [k[:32] for k in unknown[:3] if isinstance(k, str) and k.isidentifier()]
        raise InvalidParameters("unexpected field" + (f"s: {', '.join(shown)}" if shown else "s"))


def require_session_id(body: dict[str, Any]) -> str:
    """`sessionId`, present and of the form adjective-noun-NNN."""
    value = body.get("sessionId")
    if not isinstance(value, str) or not value:
        raise InvalidParameters("sessionId is required")
    if len(value) > MAX_SESSION_ID_CHARS or not SESSION_ID_PATTERN.match(value):
        raise InvalidParameters("sessionId must look like golden-eagle-427")
    return value


def require_language(body: dict[str, Any], field: str) -> str:
    """A supported ISO 639-1 code in `field`; any other string is UNSUPPORTED_LANGUAGE."""
    value = body.get(field)
    if value is None or value == "":
        raise InvalidParameters(f"{field} is required")
    if not isinstance(value, str):
        raise InvalidParameters(f"{field} must be a lower-case ISO 639-1 code")
    if value not in supported_languages():
        # Echo the value only when it looks like a code, never arbitrary client text.
        shown = f" '{value}'" if LANGUAGE_PATTERN.match(value) else ""
        raise UnsupportedLanguage(f"{field}{shown} is not a supported lower-case ISO 639-1 code")
    return value


def require_role(body: dict[str, Any]) -> str:
    """`role`, one of speaker or listener."""
    value = body.get("role")
    if value not in ROLES:
        raise InvalidParameters("role must be 'speaker' or 'listener'")
    return value


def require_audio_format(body: dict[str, Any]) -> str:
    """`audioFormat` at createSession: optional, and when given one the product supports."""
    value = body.get("audioFormat", AUDIO_FORMAT)
    if value not in AUDIO_FORMATS:
        raise InvalidParameters(f"audioFormat must be one of: {', '.join(sorted(AUDIO_FORMATS))}")
    return value


def optional_resume_token(body: dict[str, Any]) -> str | None:
    """`resumeToken` of a listener refresh: absent, or a string (whether it is valid is decided later)."""
    value = body.get("resumeToken")
    if value is not None and not isinstance(value, str):
        raise InvalidParameters("resumeToken must be a string")
    return value


def require_audio_frame(body: dict[str, Any]) -> tuple[int, str]:
    """`seq` (int >= 0) and `audio` (base64 text up to MAX_AUDIO_CHARS)."""
    seq = body.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or seq >= 2**53:
        raise InvalidParameters("seq must be an integer >= 0")
    audio = body.get("audio")
    if not isinstance(audio, str) or not audio:
        raise InvalidParameters("audio must be a non-empty base64 string")
    if len(audio) > MAX_AUDIO_CHARS:
        raise PayloadTooLarge(f"audio is limited to {MAX_AUDIO_CHARS} base64 characters")
    if not _BASE64.match(audio):
        raise InvalidParameters("audio must be base64")
    return seq, audio


_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
