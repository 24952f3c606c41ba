"""Least privilege, checked over template.yaml itself."""

from __future__ import annotations

from typing import Any

from local_stack import template as cfn

# Where AWS requires "*" as the resource: (resource, first action) -> why. Add an entry only with the reason.
STAR_ALLOWED: dict[tuple[str, str], str] = {
    (
        "ConnectionTimer",
        "logs:CreateLogDelivery",
    ): "CloudWatch Logs delivery actions have no resource-level permissions",
}
# SAM policy templates allowed, each no broader than the calls its holders make. DynamoDBCrudPolicy
# is not among them: it grants Scan, BatchWriteItem and PutItem that no function here uses.
SCOPED_TEMPLATES = {"LambdaInvokePolicy"}


def _statements(props: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in props.get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            found += policy["Statement"]
    return found


def test_policy_no_star_resource(template: dict[str, Any]) -> None:
    for type_ in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
        for name, props in cfn.resources_of(template, type_).items():
            for statement in _statements(props):
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert "*" not in resources or (name, actions[0]) in STAR_ALLOWED, (name, statement)
                assert not any(a.endswith(":*") or a == "*" for a in actions), (name, statement)


def test_policy_every_lambda_permission_has_source_arn(template: dict[str, Any]) -> None:
    permissions = cfn.resources_of(template, "AWS::Lambda::Permission")
    assert len(permissions) >= len(cfn.routes(template))
    for name, props in permissions.items():
        assert props.get("SourceArn"), name
        assert props["Principal"] == "apigateway.amazonaws.com", name


def test_policy_state_machine_may_invoke_only_the_notifier(template: dict[str, Any]) -> None:
    props = template["Resources"]["ConnectionTimer"]["Properties"]
    invokes = [p for p in props["Policies"] if "LambdaInvokePolicy" in p]
    assert invokes == [{"LambdaInvokePolicy": {"FunctionName": {"Ref": "NotifierFunction"}}}]
    for statement in _statements(props):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(a.startswith("logs:") for a in actions), statement
    assert props["Type"] == "STANDARD"


def test_policy_only_connect_and_disconnect_start_timers_and_stops_target_executions(template: dict[str, Any]) -> None:
    starters, stoppers = set(), set()
    for name, props in cfn.resources_of(template, "AWS::Serverless::Function").items():
        for statement in _statements(props):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "states:StartExecution" in actions:
                starters.add(name)
                resource = statement["Resource"]
                # The notifier names the timer by its fixed name (a Ref would be a cycle).
                assert resource == {"Ref": "ConnectionTimer"} or resource["Fn::Sub"].endswith(
                    ":stateMachine:${AWS::StackName}-timer"
                ), (name, resource)
            if "states:StopExecution" in actions:
                stoppers.add(name)
                assert ":execution:${ConnectionTimer.Name}:*" in statement["Resource"]["Fn::Sub"]
    assert starters == {"ConnectFunction", "DisconnectFunction", "NotifierFunction"}
    assert stoppers == {"DisconnectFunction", "EndSessionFunction"}


def test_policy_tables_on_demand_with_ttl_pitr_and_encryption(template: dict[str, Any]) -> None:
    for name, props in cfn.resources_of(template, "AWS::DynamoDB::Table").items():
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["TimeToLiveSpecification"]["Enabled"] is True, name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert props["SSESpecification"]["SSEEnabled"] is True, name


def test_policy_authorizer_has_no_identity_source(template: dict[str, Any]) -> None:
    # With one, API Gateway would answer 401 to anonymous listeners without calling the authorizer.
    (props,) = cfn.resources_of(template, "AWS::ApiGatewayV2::Authorizer").values()
    assert "IdentitySource" not in props


def test_policy_no_policy_template_broader_than_its_calls(template: dict[str, Any]) -> None:
    for type_ in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
        for name, props in cfn.resources_of(template, type_).items():
            for policy in props.get("Policies", []):
                if isinstance(policy, dict) and "Statement" in policy:
                    continue
                assert isinstance(policy, dict), (name, policy)  # no managed policy names
                assert set(policy) <= SCOPED_TEMPLATES, (name, policy)


def test_policy_refresh_may_count_a_join_against_the_rate_limit(template: dict[str, Any]) -> None:
    # A listener refresh without a valid resumeToken is a join: it writes the RateLimits table.
    props = template["Resources"]["RefreshConnectionFunction"]["Properties"]
    assert any(
        s["Resource"] == {"Fn::GetAtt": ["RateLimitsTable", "Arn"]} and s["Action"] == "dynamodb:UpdateItem"
        for s in _statements(props)
    )
