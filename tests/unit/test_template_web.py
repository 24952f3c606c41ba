"""The web hosting and the managed-login client, checked on template.yaml."""

from __future__ import annotations

from typing import Any


def test_web_bucket_private_owner_enforced_encrypted(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["WebBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def test_web_bucket_policy_lets_only_this_distribution_read(template: dict[str, Any]) -> None:
    statements = template["Resources"]["WebBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allows) == 1
    (allow,) = allows
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    source = allow["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]
    assert source.endswith(":distribution/${WebDistribution}")
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert denies[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_web_distribution_https_only_through_oac_with_security_headers(template: dict[str, Any]) -> None:
    config = template["Resources"]["WebDistribution"]["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["WebOriginAccessControl", "Id"]}
    behaviors = [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]
    assert all(b["ViewerProtocolPolicy"] == "redirect-to-https" for b in behaviors)
    assert all(b["Compress"] is True for b in behaviors)
    assert all(b["ResponseHeadersPolicyId"] == {"Ref": "WebSecurityHeaders"} for b in behaviors)
    # The pages' configuration is never cached (Managed-CachingDisabled).
    (config_json,) = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/config.json"]
    assert config_json["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    headers = template["Resources"]["WebSecurityHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]
    security = headers["SecurityHeadersConfig"]
    csp = security["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"][0]
    assert "frame-ancestors 'none'" in csp
    assert "connect-src 'self' wss://${WebSocketApi}.execute-api." in csp
    assert "default-src 'self'" in csp
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert security["ContentTypeOptions"] == {"Override": True}


def test_web_app_client_code_flow_only_public_and_local_callback(template: dict[str, Any]) -> None:
    client = template["Resources"]["WebAppClient"]["Properties"]
    assert client["GenerateSecret"] is False
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert sorted(client["AllowedOAuthScopes"]) == ["email", "openid", "profile"]
    assert client["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]  # no password flows
    callbacks = [c["Fn::Sub"] for c in client["CallbackURLs"]]
    assert callbacks[0][0] == "https://${Host}/speaker.html"
    assert callbacks[1] == "http://localhost:${LocalDevPort}/speaker.html"
    assert client["IdTokenValidity"] == 60
    # The authorizer accepts this client and the command line's.
    env = template["Resources"]["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    assert env["JWT_CLIENT_ID"]["Fn::If"][1] == {"Fn::Sub": "${WebAppClient},${UserPoolClient}"}


def test_web_outputs_for_make_deploy(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    for name in ("WebAppUrl", "SpeakerPageUrl", "ListenerLinkPattern", "WebBucketName", "WebDistributionId"):
        assert name in outputs, name
    for name in ("WebAppClientId", "SignInBaseUrl"):
        assert outputs[name]["Condition"] == "CreateUserPool", name
