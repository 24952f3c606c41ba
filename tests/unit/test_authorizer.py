"""The $connect REQUEST authorizer against a key pair and JWKS generated in the test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from broadcast.auth import TokenSettings
from broadcast.handlers import authorizer
from tests.helpers import load_event
from tests.jwt_keys import CLIENT_ID, ISSUER, KID, KeySet


def authorize(token: str | None) -> dict[str, Any]:
    event = load_event("authorizer_anonymous")
    if token is not None:
        event["queryStringParameters"] = {"token": token}
    return authorizer.handler(event, None)


def assert_refused(token: str) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_authorizer_valid_id_token_allows_with_user_context(keys: KeySet) -> None:
    policy = authorize(keys.token("id"))
    assert policy["principalId"] == "alice"
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert policy["context"] == {"authenticated": "true", "userId": "alice"}


def test_authorizer_valid_access_token_allows(keys: KeySet) -> None:
    assert authorize(keys.token("access"))["context"]["userId"] == "alice"


def test_authorizer_context_values_are_all_strings(keys: KeySet) -> None:
    for token in (keys.token("id"), None):
        assert all(isinstance(v, str) for v in authorize(token)["context"].values())


def test_authorizer_no_token_allows_anonymous(keys: KeySet) -> None:
    policy = authorize(None)
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert policy["context"] == {"authenticated": "false", "userId": ""}


def test_authorizer_policy_covers_the_method_arn(keys: KeySet) -> None:
    event_arn = load_event("authorizer_anonymous")["methodArn"]
    assert authorize(None)["policyDocument"]["Statement"][0]["Resource"] == event_arn


def test_authorizer_expired_token_refused(keys: KeySet) -> None:
    past = int(time.time()) - 7200
    assert_refused(keys.token(iat=past, exp=past + 3600))


def test_authorizer_expiry_within_leeway_accepted(keys: KeySet) -> None:
    now = int(time.time())
    assert authorize(keys.token(exp=now - 5))["principalId"] == "alice"


def test_authorizer_not_yet_valid_token_refused(keys: KeySet) -> None:
    assert_refused(keys.token(nbf=int(time.time()) + 3600))


def test_authorizer_wrong_issuer_refused(keys: KeySet) -> None:
    assert_refused(keys.token(iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"))


def test_authorizer_id_token_wrong_audience_refused(keys: KeySet) -> None:
    assert_refused(keys.token("id", aud="another-client"))


def test_authorizer_access_token_wrong_client_refused(keys: KeySet) -> None:
    assert_refused(keys.token("access", client_id="another-client"))


def test_authorizer_access_token_with_only_aud_refused(keys: KeySet) -> None:
    # Cognito access tokens carry client_id, not aud: an aud alone must not pass for one.
    assert_refused(keys.token("access", client_id=None, aud=CLIENT_ID))


def test_authorizer_wrong_token_use_refused(keys: KeySet) -> None:
    assert_refused(keys.token("refresh"))


def test_authorizer_missing_token_use_refused(keys: KeySet) -> None:
    assert_refused(keys.token(token_use=None))


def test_authorizer_alg_none_refused(keys: KeySet) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": KID}).encode())
    payload = _b64(json.dumps(keys.claims()).encode())
    assert_refused(f"{header}.{payload}.")


def test_authorizer_hs256_signed_with_public_key_refused(keys: KeySet) -> None:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    payload = _b64(json.dumps(keys.claims()).encode())
    signature = hmac.new(keys.public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert_refused(f"{header}.{payload}.{_b64(signature)}")


def test_authorizer_unknown_kid_refused(keys: KeySet) -> None:
    assert_refused(keys.token(kid="some-other-key"))


def test_authorizer_tampered_payload_refused(keys: KeySet) -> None:
    header, _payload, signature = keys.token().split(".")
    forged = _b64(json.dumps(keys.claims(sub="mallory")).encode())
    assert_refused(f"{header}.{forged}.{signature}")


def test_authorizer_signed_by_another_key_refused(keys: KeySet, tmp_path: Any) -> None:
    (tmp_path / "other").mkdir()
    other = KeySet(tmp_path / "other")
    assert_refused(other.token())


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "....", "x" * 10_000, "\u00e9\u00e9.\u00e9.\u00e9"])
def test_authorizer_garbage_refused_never_anonymous(keys: KeySet, garbage: str) -> None:
    assert_refused(garbage)


def test_authorizer_garbage_event_from_events_dir_refused(keys: KeySet) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.handler(load_event("authorizer_garbage_token"), None)


def test_authorizer_refusal_log_never_contains_the_token(keys: KeySet, capsys: pytest.CaptureFixture[str]) -> None:
    token = keys.token(iss="https://evil.example")
    assert_refused(token)
    captured = capsys.readouterr()
    assert token not in captured.out + captured.err
    assert token.split(".")[2] not in captured.out + captured.err


def test_authorizer_keys_fetched_once_across_invocations(keys: KeySet) -> None:
    for _ in range(3):
        authorize(keys.token())
    assert authorizer.verifier().jwks.fetches == 1


def test_authorizer_settings_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWKS_URL", "https://example.invalid/jwks.json")
    monkeypatch.setenv("JWT_CLIENT_ID", CLIENT_ID)
    assert TokenSettings.from_env() == TokenSettings(ISSUER, "https://example.invalid/jwks.json", CLIENT_ID)


def test_authorizer_missing_settings_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_ISSUER", raising=False)
    with pytest.raises(RuntimeError, match="JWT_ISSUER"):
        TokenSettings.from_env()


def test_authorizer_accepts_each_of_several_app_clients_and_no_other(
    keys: KeySet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The web pages and the command line sign in through two app clients of one pool.
    from broadcast.auth import TokenSettings, TokenVerifier
    from broadcast.handlers import authorizer

    settings = TokenSettings(ISSUER, "https://jwks.invalid/.well-known/jwks.json", f"web-client, {CLIENT_ID}")
    monkeypatch.setattr(authorizer, "_verifier", TokenVerifier(settings, jwks_client=keys.jwks_client()))
    assert authorize(keys.token("id", aud="web-client"))["context"]["userId"] == "alice"
    assert authorize(keys.token("access", client_id="web-client"))["context"]["userId"] == "alice"
    assert authorize(keys.token("id"))["context"]["userId"] == "alice"
    assert_refused(keys.token("id", aud="another-client"))
    assert_refused(keys.token("access", client_id="web-client,another-client"))
