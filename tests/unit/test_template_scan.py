"""The security scan (checkov, run by `make lint`) and what it made the template fix: stage logs, redeploys."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from local_stack import template as cfn

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-scan" / "bin" / "checkov"
ARGS = ["--framework", "cloudformation", "--compact", "--quiet", "--skip-download", "-o", "json"]
# What the stage's access log must answer for "it dropped us at 9:40" (docs/operations.md).
ACCESS_LOG_FIELDS = {
    "requestId",
    "connectionId",
    "routeKey",
    "eventType",
    "status",
    "integrationError",
    "latency",
    "sourceIp",
}


def scan(path: Path) -> dict[str, Any]:
    assert CHECKOV.exists(), "checkov is installed by `make venv` (or `make scan`) into .venv-scan"
    done = subprocess.run([str(CHECKOV), *ARGS, "-f", str(path)], capture_output=True, text=True, timeout=300)  # noqa: S603
    report = json.loads(done.stdout)
    return {"exit": done.returncode, "failed": [c["check_id"] for c in report["results"]["failed_checks"]]}


def test_scan_template_has_no_unsuppressed_finding() -> None:
    result = scan(ROOT / "template.yaml")
    assert (result["exit"], result["failed"]) == (0, [])


def test_scan_new_finding_fails(tmp_path: Path) -> None:
    # GIVEN a copy of the template whose stage lost its access log, and one function its concurrency limit
    text = (ROOT / "template.yaml").read_text()
    text = re.sub(r"\n      AccessLogSettings:\n(?:        .*\n)+?(?=\n)", "\n", text, count=1)
    text = text.replace("ReservedConcurrentExecutions: !If [ReserveConcurrency, 10, !Ref AWS::NoValue]", "", 1)
    copy = tmp_path / "template.yaml"
    copy.write_text(text)
    (tmp_path / "statemachines").symlink_to(ROOT / "statemachines")
    # THEN the scan fails and names both findings
    result = scan(copy)
    assert result["exit"] != 0
    assert {"CKV_AWS_95", "CKV_AWS_115"} <= set(result["failed"])


def test_scan_every_suppression_has_a_reason(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (name, skip)
            assert len(skip.get("comment", "")) > 30, (name, skip)


def test_stage_access_log_json_with_the_fields_an_operator_needs(template: dict[str, Any]) -> None:
    (stage,) = cfn.resources_of(template, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}
    fields = json.loads(settings["Format"])
    assert set(fields) >= ACCESS_LOG_FIELDS
    assert all(value.startswith("$context.") for value in fields.values())
    log_group = template["Resources"]["AccessLogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert stage["DefaultRouteSettings"]["DetailedMetricsEnabled"] is True


def test_stage_redeploys_on_every_change(template: dict[str, Any]) -> None:
    # A Deployment with only ApiId is never replaced: later route changes would never reach the stage.
    assert cfn.resources_of(template, "AWS::ApiGatewayV2::Deployment") == {}
    (stage,) = cfn.resources_of(template, "AWS::ApiGatewayV2::Stage").values()
    assert stage["AutoDeploy"] is True
    assert "DeploymentId" not in stage


def test_concurrency_protects_the_refresh_path_within_the_default_quota(template: dict[str, Any]) -> None:
    reserved = {
        name: props["ReservedConcurrentExecutions"]["Fn::If"][1]
        for name, props in cfn.resources_of(template, "AWS::Serverless::Function").items()
    }
    # Every function has one; together they leave the 100 that Lambda keeps unreserved out of 1,000.
    assert sum(reserved.values()) <= 900
    # The timer's notices and refreshes cannot be starved by a flood on sendAudio or $default.
    assert reserved["NotifierFunction"] >= 10
    assert reserved["RefreshConnectionFunction"] >= 10
    assert reserved["DefaultFunction"] <= 10
