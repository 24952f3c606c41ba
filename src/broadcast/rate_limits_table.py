"""Access patterns of the RateLimits table: fixed-window counters, one item per (scope, subject, window)."""

from __future__ import annotations

from broadcast import aws, clock
from broadcast.config import settings
from broadcast.dynamo import values
from broadcast.errors import RateLimitExceeded


def hit(scope: str, subject: str, *, limit: int, window_seconds: int) -> None:
    """Count one request against `limit` per window; RateLimitExceeded (with retryAfterSeconds) above it.

    One conditional UpdateItem: the counter never goes past the limit, so a refused request
    costs a failed condition and no write. A limit of 0 disables the check.
    """
    if limit <= 0:
        return
    now = clock.now_seconds()
    window_start = now - now % window_seconds
    retry_after = max(1, window_start + window_seconds - now)
    try:
        aws.client("dynamodb").update_item(
            TableName=settings().rate_limits_table,
            Key={"limitKey": {"S": f"{scope}#{subject}#{window_start}"}},
            UpdateExpression="ADD hits :one SET expiresAt = if_not_exists(expiresAt, :expires)",
            ConditionExpression="attribute_not_exists(hits) OR hits < :limit",
            ExpressionAttributeValues=values(one=1, limit=limit, expires=window_start + 2 * window_seconds),
        )
    except Exception as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            raise RateLimitExceeded(retry_after, f"too many {scope} requests; retry in {retry_after} s") from exc
        raise
