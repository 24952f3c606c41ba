"""The state that events/ refers to, so that `sam local invoke` and `make invoke` give what each event's name promises.

`golden-eagle-427` is an active English session of `speaker-sub-1`, whose speaker connection is
`L0SM9cOFvHcCIhw=`, with one Spanish listener. The connections the join, refresh and create
events come from are open and in no session. Every seeded connection is live for the management API: posts to it are
accepted and logged (`SEEDED-POST`), as a real client would receive them. Seeding again puts
everything back as it was, whatever earlier invocations changed.
"""

from __future__ import annotations

from typing import Any

SESSION_ID = "golden-eagle-427"
SPEAKER_SUB = "speaker-sub-1"
SPEAKER = "L0SM9cOFvHcCIhw="
LISTENER = "Ls7Ab8Cd9Ef0Gh1="
# Open, in no session: the connections of join_session*, refresh_*, create_session* events.
UNJOINED = {
    "Mx2TaP9rVbQCJrA=": None,
    "Nq7UbX1sWcRDKsB=": SPEAKER_SUB,
    "Pr8VcY2tXdSELtC=": None,
    "Cr8SeSs1oNnEw0A=": SPEAKER_SUB,
}
CONNECTIONS = frozenset({SPEAKER, LISTENER, *UNJOINED})
TTL_SECONDS = 3 * 3600


def seed(ddb: Any, tables: dict[str, str], now_ms: int) -> None:
    """Write (or write again) the seeded session and connections into the template's tables."""
    from broadcast.connections_table import Connection
    from broadcast.dynamo import to_item

    ttl = now_ms // 1000 + TTL_SECONDS
    sessions, connections = tables["SessionsTable"], tables["ConnectionsTable"]
    ddb.put_item(
        TableName=sessions,
        Item=to_item(
            {
                "sessionId": SESSION_ID,
                "speakerUserId": SPEAKER_SUB,
                "speakerConnectionId": SPEAKER,
                "sourceLanguage": "en",
                "isActive": True,
                "listenerCount": 1,
                "languageCounts": {"es": 1},
                "createdAt": now_ms,
                "expiresAt": ttl + 21 * 3600,
            }
        ),
    )
    members = [
        Connection(SPEAKER, now_ms, ttl, SPEAKER_SUB, SESSION_ID, "speaker"),
        Connection(LISTENER, now_ms, ttl, None, SESSION_ID, "listener", "es"),
        *(Connection(connection_id, now_ms, ttl, user) for connection_id, user in UNJOINED.items()),
    ]
    for member in members:
        ddb.put_item(TableName=connections, Item=member.as_item())


def main() -> None:
    """`make seed`: ask a running local stack to seed itself again."""
    import argparse
    import sys
    import urllib.error

    from local_stack.process import local_api

    parser = argparse.ArgumentParser(description="put back the state events/ refers to, in a running make local")
    parser.add_argument("--port", type=int, default=8080)
    port = parser.parse_args().port
    try:
        local_api(f"http://127.0.0.1:{port}", "/_local/seed", method="POST", timeout=10)
    except (urllib.error.URLError, OSError):
        print(f"make seed: no local stack on port {port}; start one with `make local SEED=1`", file=sys.stderr)
        sys.exit(2)
    print(f"seeded the local stack on port {port}: session {SESSION_ID}")


if __name__ == "__main__":
    main()
