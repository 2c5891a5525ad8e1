"""`desra serve`: start the dashboard (Gradio) on this machine."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add ``desra serve`` to the ``desra`` parser."""
    parser = subparsers.add_parser(
        "serve",
        help="start the dashboard in the browser",
        description=(
            "Serve the desra dashboard (detect, correct, curate, repair, evaluate, attribute). "
            "Binds to 127.0.0.1 unless --host says otherwise; serves files only from the workspace."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    parser.add_argument("--auth", metavar="USER:PASS", help="require this user name and password to open the page")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="folder for results, curated sets and jobs (default $DESRA_WORKSPACE or ./desra-workspace)",
    )
    parser.set_defaults(func=_serve)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """``"user:pass"`` -> ``("user", "pass")``; None stays None; anything else raises ConfigError."""
    from desra.core.errors import ConfigError

    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"--auth got {text!r}; expected USER:PASS with both parts non-empty, e.g. --auth alice:s3cret")
    return user, password


def _serve(args: argparse.Namespace) -> int:
    from desra.core.errors import ConfigError
    from desra.core.paths import default_workspace

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port got {args.port}; expected a TCP port between 1 and 65535")
    auth = parse_auth(args.auth)
    if auth is None and not _is_loopback(args.host):
        print(
            f"desra: warning: serving on {args.host} without --auth: anyone who can reach this address can use the dashboard",
            file=sys.stderr,
        )
    workspace = (args.workspace or default_workspace()).expanduser().resolve()
    from ui.app import serve

    serve(workspace, host=args.host, port=args.port, auth=auth)
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
