"""broadcast.sigv4 signs exactly as botocore's SigV4Auth does, for the requests the fan-out sends."""

from __future__ import annotations

import datetime
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcast.sigv4 import SigV4

MOMENT = datetime.datetime(2026, 11, 30, 3, 21, 7, tzinfo=datetime.UTC)


def botocore_headers(url: str, body: bytes, credentials: Credentials, region: str) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=MOMENT):
        SigV4Auth(credentials, "execute-api", region).add_auth(request)
    return {
        k: v for k, v in request.headers.items() if k.lower() in ("authorization", "x-amz-date", "x-amz-security-token")
    }


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDCYtoken+/="])
@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://abc123def4.execute-api.eu-west-1.amazonaws.com", "abc123def4.execute-api.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:8765", "127.0.0.1:8765"),
    ],
)
def test_signature_matches_botocore(token: str | None, origin: str, host: str) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    path = "/live/@connections/Cr8SeSs1oNnEw0A%3D"
    body = b'{"type":"audio","seq":1,"audio":"AAAA"}'
    ours = SigV4(host, "eu-west-1", "execute-api").headers("POST", path, body, credentials, now=MOMENT)
    assert ours == botocore_headers(origin + path, body, credentials, "eu-west-1")


@settings(max_examples=60, deadline=None)
@given(
    connection_id=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=1, max_size=24
    ),
    body=st.binary(max_size=2048),
)
def test_any_connection_id_and_body_sign_like_botocore(connection_id: str, body: bytes) -> None:
    from urllib.parse import quote

    credentials = Credentials("AKIDEXAMPLE", "secret", "token")
    path = f"/live/@connections/{quote(connection_id, safe='')}"
    host = "abc.execute-api.us-east-1.amazonaws.com"
    ours = SigV4(host, "us-east-1", "execute-api").headers("POST", path, body, credentials, now=MOMENT)
    assert ours == botocore_headers(f"https://{host}{path}", body, credentials, "us-east-1")


def test_signing_key_follows_the_day_and_the_secret() -> None:
    signer = SigV4("h", "us-east-1", "execute-api")
    first = signer._signing_key("secret", "20261130")
    assert signer._signing_key("secret", "20261130") == first
    assert signer._signing_key("secret", "20261201") != first
    assert signer._signing_key("rotated", "20261201") != signer._signing_key("secret", "20261201")
