"""make deploy's web step against moto's S3 and CloudFront: types, cache headers, configuration from outputs."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deploy import publish
from deploy.pages import WEB_ROOT, page_files

OUTPUTS = {
    "WebSocketUrl": "wss://abc123def4.execute-api.us-east-1.amazonaws.com/live",
    "WebAppUrl": "https://d111111abcdef8.cloudfront.net/",
    "SpeakerPageUrl": "https://d111111abcdef8.cloudfront.net/speaker.html",
    "SignInBaseUrl": "https://broadcast-sessions-dev-123456789012.auth.us-east-1.amazoncognito.com",
    "WebAppClientId": "4example0client0id0web",
    "WebBucketName": "broadcast-web-bucket",
}


@pytest.fixture
def aws() -> Any:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=OUTPUTS["WebBucketName"])
        cloudfront = boto3.client("cloudfront", region_name="us-east-1")
        distribution = cloudfront.create_distribution(
            DistributionConfig={
                "CallerReference": "test",
                "Comment": "web",
                "Enabled": True,
                "Origins": {
                    "Quantity": 1,
                    "Items": [
                        {
                            "Id": "web",
                            "DomainName": "broadcast-web-bucket.s3.us-east-1.amazonaws.com",
                            "S3OriginConfig": {"OriginAccessIdentity": ""},
                        }
                    ],
                },
                "DefaultCacheBehavior": {"TargetOriginId": "web", "ViewerProtocolPolicy": "redirect-to-https"},
            }
        )
        yield s3, cloudfront, {**OUTPUTS, "WebDistributionId": distribution["Distribution"]["Id"]}


def head(s3: Any, key: str) -> dict[str, Any]:
    return s3.head_object(Bucket=OUTPUTS["WebBucketName"], Key=key)


def test_publish_uploads_pages_with_types_and_cache_headers(aws: Any) -> None:
    s3, cloudfront, outputs = aws
    url = publish.publish(outputs, s3, cloudfront)
    assert url == OUTPUTS["SpeakerPageUrl"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=OUTPUTS["WebBucketName"])["Contents"]}
    expected = {p.relative_to(WEB_ROOT).as_posix() for p in page_files()} | {"config.json"}
    assert keys == expected
    assert not any(key.startswith("test/") for key in keys)  # the Node tests are not published
    assert {"index.html", "speaker.html", "broadcast-client.js", "capture-worklet.js", "vendor/qrcode.mjs"} <= keys
    # Modules and worklets need a JavaScript type; pages revalidate; the configuration is never cached.
    assert head(s3, "broadcast-client.js")["ContentType"] == "text/javascript; charset=utf-8"
    assert head(s3, "pcm-player-worklet.js")["ContentType"] == "text/javascript; charset=utf-8"
    assert head(s3, "index.html")["ContentType"] == "text/html; charset=utf-8"
    assert head(s3, "index.html")["CacheControl"] == "no-cache"
    assert head(s3, "style.css")["CacheControl"] == "public, max-age=300"
    assert head(s3, "config.json")["CacheControl"] == "no-store"
    assert head(s3, "config.json")["ContentType"] == "application/json"


def test_publish_writes_the_configuration_from_stack_outputs(aws: Any) -> None:
    s3, cloudfront, outputs = aws
    publish.publish(outputs, s3, cloudfront)
    body = s3.get_object(Bucket=OUTPUTS["WebBucketName"], Key="config.json")["Body"].read()
    config = json.loads(body)
    assert config["webSocketUrl"] == OUTPUTS["WebSocketUrl"]
    assert config["listenerUrl"] == OUTPUTS["WebAppUrl"]
    assert config["auth"] == {
        "authorizeUrl": f"{OUTPUTS['SignInBaseUrl']}/oauth2/authorize",
        "tokenUrl": f"{OUTPUTS['SignInBaseUrl']}/oauth2/token",
        "logoutUrl": f"{OUTPUTS['SignInBaseUrl']}/logout",
        "clientId": OUTPUTS["WebAppClientId"],
        "scopes": "openid email profile",
    }
    assert config["languages"]["es"] == "Spanish"


def test_publish_invalidates_the_distribution(aws: Any) -> None:
    s3, cloudfront, outputs = aws
    publish.publish(outputs, s3, cloudfront)
    listed = cloudfront.list_invalidations(DistributionId=outputs["WebDistributionId"])["InvalidationList"]
    assert listed["Quantity"] == 1


def test_publish_refuses_a_stack_without_web_outputs(aws: Any) -> None:
    s3, cloudfront, outputs = aws
    with pytest.raises(SystemExit, match="WebBucketName"):
        publish.publish({k: v for k, v in outputs.items() if k != "WebBucketName"}, s3, cloudfront)


def test_publish_stack_of_reads_samconfig_environments() -> None:
    assert publish.stack_of("dev") == ("broadcast-sessions-dev", "us-east-1")
    assert publish.stack_of("default") == ("broadcast-sessions", "us-east-1")
