"""The ``openrlhf-act`` command line. Each command group lives in ``openrlhf_act.commands.<name>``
and must stay cheap to import; heavy work is imported inside the command's ``run`` function."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from openrlhf_act import __version__
from openrlhf_act.errors import DataError, UsageError
from openrlhf_act.redaction import RedactingFilter, redact_text

COMMANDS = (
    ("data", "openrlhf_act.commands.data"),
    ("reward", "openrlhf_act.commands.reward"),
    ("serve-reward", "openrlhf_act.commands.serve_reward"),
    ("recipe", "openrlhf_act.commands.recipe"),
    ("eval", "openrlhf_act.commands.eval"),
    ("demo", "openrlhf_act.commands.demo"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openrlhf-act",
        description="Agentic Critical Training for OpenRLHF: build ACT data, serve ACT rewards, "
        "check recipes, evaluate agents.",
    )
    parser.add_argument("--version", action="version", version=f"openrlhf-act {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS:
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.configure(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    if not args.verbose:  # environment packages log every episode load at INFO
        for noisy in ("scienceworld", "py4j", "textworld", "alfworld"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except (UsageError, DataError) as exc:
        print(f"openrlhf-act: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("openrlhf-act: interrupted", file=sys.stderr)
        return 130
