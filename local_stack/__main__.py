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
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 lets sam local invoke's containers in)"
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        help="write every function's environment, pointed at this stack, for sam local invoke --env-vars",
    )
    parser.add_argument("--seed", action="store_true", help="create the session and connections events/ refers to")
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

    run(
        args.port,
        args.time_scale,
        args.template.resolve(),
        parameters,
        host=args.host,
        env_file=args.env_file.resolve() if args.env_file else None,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
