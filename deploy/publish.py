"""Publish web/ to the stack's bucket, write the pages' configuration from its outputs, invalidate CloudFront.

`make deploy ENV=dev` runs this after `sam deploy --config-env dev`. Only boto3: nothing else
to install. Prints the speaker page's URL at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from deploy.pages import CONFIG_NAME, CONTENT_TYPES, ROOT, WEB_ROOT, cache_control, page_config, page_files


def stack_of(config_env: str, samconfig: Path = ROOT / "samconfig.toml") -> tuple[str, str]:
    """(stack name, region) of a samconfig.toml environment, as sam deploy --config-env reads them."""
    config = tomllib.loads(samconfig.read_text())
    merged: dict[str, Any] = {}
    for section in ("default", config_env):
        for command in ("global", "deploy"):
            merged.update(config.get(section, {}).get(command, {}).get("parameters", {}))
    return merged["stack_name"], merged.get("region", "us-east-1")


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """The stack's outputs, by key."""
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def config_from_outputs(outputs: dict[str, str]) -> dict[str, Any]:
    """/config.json for a deployment: the same shape `make local` serves."""
    return page_config(
        outputs["WebSocketUrl"], outputs["WebAppUrl"], outputs.get("SignInBaseUrl"), outputs.get("WebAppClientId")
    )


def upload(s3: Any, bucket: str, config: dict[str, Any], web_root: Path = WEB_ROOT) -> list[str]:
    """Put every page file (with its content type and cache header) and the configuration; returns the keys."""
    keys = []
    for path in page_files(web_root):
        key = path.relative_to(web_root).as_posix()
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=path.read_bytes(),
            ContentType=CONTENT_TYPES[path.suffix],
            CacheControl=cache_control(key),
        )
        keys.append(key)
    s3.put_object(
        Bucket=bucket,
        Key=CONFIG_NAME,
        Body=json.dumps(config, indent=2).encode(),
        ContentType=CONTENT_TYPES[".json"],
        CacheControl=cache_control(CONFIG_NAME),
    )
    return [*keys, CONFIG_NAME]


def invalidate(cloudfront: Any, distribution_id: str) -> str:
    """Invalidate everything (the pages have no hashed names); returns the invalidation id."""
    created = cloudfront.create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/*"]}, "CallerReference": f"deploy-{time.time_ns()}"},
    )
    return created["Invalidation"]["Id"]


def publish(outputs: dict[str, str], s3: Any, cloudfront: Any, web_root: Path = WEB_ROOT) -> str:
    """Upload, configure and invalidate; returns the speaker page's URL."""
    missing = [k for k in ("WebBucketName", "WebDistributionId", "WebSocketUrl", "WebAppUrl") if k not in outputs]
    if missing:
        raise SystemExit(f"the stack has no {', '.join(missing)} output: deploy the current template.yaml first")
    if not (web_root / "vendor" / "qrcode.mjs").exists():
        raise SystemExit("web/vendor/qrcode.mjs is missing: run `make web` first")
    upload(s3, outputs["WebBucketName"], config_from_outputs(outputs), web_root)
    invalidate(cloudfront, outputs["WebDistributionId"])
    return outputs.get("SpeakerPageUrl", outputs["WebAppUrl"] + "speaker.html")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config-env", default="default", help="the samconfig.toml environment (make deploy ENV=)")
    args = parser.parse_args()
    import boto3

    stack_name, region = stack_of(args.config_env)
    outputs = stack_outputs(boto3.client("cloudformation", region_name=region), stack_name)
    url = publish(outputs, boto3.client("s3", region_name=region), boto3.client("cloudfront", region_name=region))
    if "SignInBaseUrl" not in outputs:
        note = "note: an external issuer, so config.json has no sign-in for the speaker page (docs/deploy.md)"
        print(note, file=sys.stderr)
    print(f"web app published for {stack_name}")
    print(f"SPEAKER PAGE {url}")


if __name__ == "__main__":
    main()
