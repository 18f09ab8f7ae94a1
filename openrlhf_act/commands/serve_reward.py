"""Serve a named reward over HTTP in OpenRLHF's remote reward-model protocol.

Start it, then pass the printed URL to OpenRLHF: --reward.remote_url http://127.0.0.1:5000/get_reward
Reward constants come from OPENRLHF_ACT_REWARD_PRESET / OPENRLHF_ACT_REWARD_CONFIG, read once at start.
"""

from __future__ import annotations

import argparse
import os

HELP = "serve a reward over HTTP for OpenRLHF's --reward.remote_url"


# flag, ServeOptions field, type, help
_LIMITS = (
    ("--max-connections", "max_connections", int, "open connections; more get 503 and a log line"),
    ("--header-timeout", "header_timeout_s", float, "seconds to send a request's headers"),
    ("--body-timeout", "body_timeout_s", float, "seconds to send a request's body once its headers are in; then 408"),
    ("--keepalive-timeout", "keepalive_timeout_s", float, "seconds an idle connection stays open"),
    ("--shutdown-grace", "shutdown_grace_s", float, "seconds after SIGTERM for requests in flight; exit 1 s later"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    from openrlhf_act.server import ServeOptions

    parser.add_argument("--reward", default="act_judgment", help="reward name (default: act_judgment)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=5000, help="port (default: 5000; 0 = any free port, 1 worker)")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (SO_REUSEPORT); about one per core"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="require this bearer token (default: $OPENRLHF_ACT_SERVE_TOKEN; none = open). "
        "OpenRLHF sends it when the URL carries it: http://act:TOKEN@host:port/get_reward",
    )
    parser.add_argument(
        "--max-request-mb", type=float, default=16.0, help="reject larger request bodies with 413 (default: 16)"
    )
    limits = parser.add_argument_group("limits (per worker; see docs/serving.md)")
    for flag, field, kind, text in _LIMITS:
        default = getattr(ServeOptions, field)  # the dataclass's defaults are the documented ones
        metavar = "N" if kind is int else "SECONDS"
        limits.add_argument(
            flag, type=kind, default=default, dest=field, metavar=metavar, help=f"{text} (default: {default:g})"
        )
    limits.add_argument(
        "--max-buffer-mb",
        type=float,
        default=ServeOptions.max_buffered_bytes / 2**20,
        help="request bodies being received at once, in total; more get 503 + Retry-After "
        f"(default: {ServeOptions.max_buffered_bytes / 2**20:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openrlhf_act.errors import UsageError
    from openrlhf_act.rewards.catalog import get_reward
    from openrlhf_act.rewards.config import config_from_env
    from openrlhf_act.server import TOKEN_ENV, ServeError, ServeOptions
    from openrlhf_act.server_workers import serve

    try:
        spec = get_reward(args.reward)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    try:
        config = config_from_env()
    except ValueError as exc:
        raise UsageError(f"bad reward setting: {exc}") from None
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    positive = [("--max-request-mb", args.max_request_mb), ("--max-buffer-mb", args.max_buffer_mb)]
    positive += [(flag, getattr(args, field)) for flag, field, _, _ in _LIMITS if field != "shutdown_grace_s"]
    for flag, value in positive:
        if not value > 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if not args.shutdown_grace_s >= 0:
        raise UsageError(f"--shutdown-grace must be 0 or more, got {args.shutdown_grace_s}")
    if args.max_buffer_mb < args.max_request_mb:
        raise UsageError("--max-buffer-mb must be at least --max-request-mb (one largest request must fit)")
    if args.token == "":
        raise UsageError("--token must not be empty (leave it out to serve without a token)")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    options = ServeOptions(
        spec=spec,
        config=config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        token=token,
        max_request_bytes=int(args.max_request_mb * 2**20),
        max_buffered_bytes=int(args.max_buffer_mb * 2**20),
        **{field: getattr(args, field) for _, field, _, _ in _LIMITS},
    )
    try:
        return serve(options)
    except ServeError as exc:
        raise UsageError(str(exc)) from None
