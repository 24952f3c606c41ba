"""Reads template.yaml: tables, functions, routes and the state machine, for tests and the emulator.

A small YAML loader is used instead of cfn-lint's or samtranslator's decoders: those pull in
their whole rule and schema sets (seconds of import) where all we need is the CloudFormation
short-form tags turned into their long form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long form."""
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def resources_of(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """Logical id -> properties of every resource of `type_`."""
    return {
        name: res.get("Properties", {})
        for name, res in template.get("Resources", {}).items()
        if res.get("Type") == type_
    }


def create_tables(ddb: Any, template: dict[str, Any], names: dict[str, str]) -> None:
    """Create every AWS::DynamoDB::Table of the template in `ddb` (moto), named by `names[logical id]`."""
    for logical_id, props in resources_of(template, "AWS::DynamoDB::Table").items():
        kwargs: dict[str, Any] = {
            "TableName": names[logical_id],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        ddb.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=names[logical_id],
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )


def state_machine_definition(
    template: dict[str, Any], logical_id: str, substitutions: dict[str, str], base: Path = ROOT
) -> str:
    """The ASL of a serverless state machine with its DefinitionSubstitutions replaced by `substitutions`."""
    props = template["Resources"][logical_id]["Properties"]
    text = (base / props["DefinitionUri"]).read_text()
    for key in props.get("DefinitionSubstitutions", {}):
        text = text.replace("${" + key + "}", substitutions[key])
    json.loads(text)  # fail here, not inside the engine, if a substitution broke the JSON
    return text


@dataclass(frozen=True)
class Route:
    """A WebSocket route as API Gateway would run it."""

    key: str
    function: str
    handler: str
    has_route_response: bool
    authorizer_function: str | None


def logical_id_of(value: Any) -> str:
    """The logical id an intrinsic like !Ref X, !GetAtt X.Arn or !Sub '...${X}...' points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            text = sub if isinstance(sub, str) else sub[0]
            refs = [part.split("}", 1)[0] for part in text.split("${")[1:]]
            refs = [r.split(".", 1)[0] for r in refs if not r.startswith("AWS::")]
            return refs[-1]
    raise ValueError(f"cannot resolve {value!r}")


def routes(template: dict[str, Any]) -> dict[str, Route]:
    """Route key -> Route, resolved Route -> Integration -> Function (and Authorizer -> Function)."""
    resources = template["Resources"]
    functions = resources_of(template, "AWS::Serverless::Function")
    globals_ = template.get("Globals", {}).get("Function", {})
    answered = {
        logical_id_of(p["RouteId"]) for p in resources_of(template, "AWS::ApiGatewayV2::RouteResponse").values()
    }
    found: dict[str, Route] = {}
    for logical_id, props in resources_of(template, "AWS::ApiGatewayV2::Route").items():
        integration = resources[logical_id_of(props["Target"])]["Properties"]
        function = logical_id_of(integration["IntegrationUri"])
        authorizer_function = None
        if props.get("AuthorizationType") == "CUSTOM":
            authorizer = resources[logical_id_of(props["AuthorizerId"])]["Properties"]
            authorizer_function = logical_id_of(authorizer["AuthorizerUri"])
        handler = functions[function].get("Handler", globals_.get("Handler"))
        found[props["RouteKey"]] = Route(
            key=props["RouteKey"],
            function=function,
            handler=handler,
            has_route_response=logical_id in answered,
            authorizer_function=authorizer_function,
        )
    return found


def handler_of(template: dict[str, Any], function: str) -> str:
    """The Handler string (module.function) of a serverless function."""
    return resources_of(template, "AWS::Serverless::Function")[function]["Handler"]


def access_log_format(template: dict[str, Any]) -> dict[str, str]:
    """The WebSocket stage's access-log format (field -> $context variable), or {} without one."""
    for props in resources_of(template, "AWS::ApiGatewayV2::Stage").values():
        settings = props.get("AccessLogSettings")
        if settings and isinstance(settings.get("Format"), str):
            return json.loads(settings["Format"])
    return {}
