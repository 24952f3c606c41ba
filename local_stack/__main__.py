"""`python -m local_stack`: serve template.yaml's WebSocket API on this machine (what `make local` runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from local_stack.template import ROOT, TEMPLATE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0 picks a free one); default 8080")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="emulated seconds per real second (600: 100 minutes in 10 s)"
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the SAM template to serve")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a template parameter, like sam deploy --parameter-overrides (repeatable)",
    )
    args = parser.parse_args()
    parameters = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--param takes NAME=VALUE, got {item!r}")
        parameters[name] = value
    if args.time_scale <= 0:
        parser.error("--time-scale must be positive")
    sys.path.insert(0, str(ROOT / "src"))
    from local_stack.server import run

    run(args.port, args.time_scale, args.template.resolve(), parameters)


if __name__ == "__main__":
    main()
