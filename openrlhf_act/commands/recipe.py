"""The shell recipes under recipes/: check them against the installed OpenRLHF before a GPU is
spent, list their settings, print what they ask the plugin. Example: openrlhf-act recipe check"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "check recipes against the installed OpenRLHF, list their settings"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="expand recipes with DRY_RUN=1 and validate every OpenRLHF command",
        description="Expand each recipe with DRY_RUN=1 for every variant it declares (presets, pipeline stages; "
        "a variable already set in your environment pins its variant) and judge every printed OpenRLHF "
        "command with the installed OpenRLHF's own argument parser and checks. Exit status 1 on any error.",
    )
    check.add_argument("scripts", nargs="*", help="recipe files or folders (default: every recipe in recipes/)")
    check.add_argument("--preset", action="append", default=[], help="only this preset (repeatable)")
    check.add_argument("--stages", action="append", default=[], help="pipeline.sh: only this STAGES value (repeatable)")
    check.add_argument(
        "--check-data",
        action="store_true",
        help="also open local dataset files: existence, columns, blendable types, prompts within the recipe's limit",
    )
    check.add_argument(
        "--cluster",
        type=_cluster,
        metavar="NODESxGPUS",
        help="expand the recipes for this cluster (NNODES, GPUS_PER_NODE) and hold every stage to it, e.g. 2x8",
    )
    check.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    check.set_defaults(func=run_check)
    preflight = sub.add_parser(
        "preflight",
        help="the checks a stage runs before its OpenRLHF command (the recipes call it)",
        description="Judge one OpenRLHF command line as `recipe check --check-data` does, then check the disk for "
        "its checkpoints and, for a local train_ppo_ray, the Ray cluster its driver will join (RAY_ADDRESS, else "
        "the latest `ray start` here), waiting up to --wait seconds for the GPUs and CPUs it asks for. "
        "Exit status 2 on any error, before anything starts.",
    )
    preflight.add_argument("--recipe", default="recipe", help="the recipe running it (where findings point)")
    preflight.add_argument("--data-kind", default="", help="the recipe's data kind (openrlhf_act/data_kinds.py)")
    preflight.add_argument("--wait", type=float, default=300.0, help="seconds to wait for Ray resources (default 300)")
    preflight.add_argument("argv", nargs=argparse.REMAINDER, help="-- the command line, as the recipe runs it")
    preflight.set_defaults(func=run_preflight)
    head = sub.add_parser("ray-head", help="a private Ray head for one recipe run (the recipes call it)")
    head.add_argument("action", choices=("start", "stop"))
    head.add_argument("--state", required=True, help="file recording the head (written by start, read by stop)")
    head.add_argument("--log", help="start: the head's log file")
    head.add_argument("--num-gpus", type=int, default=0, help="start: GPUs it offers (real or, on CPU, fake)")
    head.add_argument("--num-cpus", type=int, help="start: CPUs it offers (default: as Ray detects)")
    head.add_argument("--timeout", type=float, default=300.0, help="start: seconds to wait for it (default 300)")
    head.set_defaults(func=run_ray_head)
    listing = sub.add_parser("list", help="the recipes and their settings (environment variables) with defaults")
    listing.add_argument("scripts", nargs="*", help="recipe files or folders (default: every recipe in recipes/)")
    listing.set_defaults(func=run_list)
    shell = sub.add_parser(
        "vars", help="shell assignments the recipes read: reward files, agent executors, the CPU environment"
    )
    shell.set_defaults(func=run_vars)


def run_check(args: argparse.Namespace) -> int:
    from openrlhf_act.errors import UsageError
    from openrlhf_act.recipe_check import check_recipes

    try:
        report = check_recipes(
            args.scripts, presets=args.preset, stages=args.stages, check_data=args.check_data, cluster=args.cluster
        )
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    for finding in report.findings:
        if finding.level == "error" or not args.quiet:
            print(finding)
    print(
        f"recipe check: {report.recipes} recipe(s), {report.expansions} variant(s), {report.commands} OpenRLHF "
        f"command(s) judged by OpenRLHF {report.openrlhf_version or '(not installed)'}: "
        f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
    )
    return 1 if report.errors else 0


def _cluster(text: str) -> tuple[int, int]:
    nodes, sep, gpus = text.lower().partition("x")
    if not (sep and nodes.isdigit() and gpus.isdigit() and int(nodes) > 0 and int(gpus) > 0):
        raise argparse.ArgumentTypeError(f"expected NODESxGPUS such as 1x8 or 2x8, got {text!r}")
    return int(nodes), int(gpus)


def run_preflight(args: argparse.Namespace) -> int:
    from pathlib import Path

    from openrlhf_act.errors import UsageError
    from openrlhf_act.recipe_check.preflight import preflight

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UsageError("recipe preflight: give the command line after --")
    findings = preflight(argv, Path(args.recipe), data_kind=args.data_kind or None, wait_s=args.wait)
    for finding in findings:
        print(f"preflight: {finding}", file=sys.stderr)
    errors = [f for f in findings if f.level == "error"]
    if errors:
        return 2
    print(f"preflight: {len(findings)} warning(s), no error", file=sys.stderr)
    return 0


def run_ray_head(args: argparse.Namespace) -> int:
    from pathlib import Path

    from openrlhf_act.devtools.local_ray import LocalRayHead, RayHeadError, stop_recorded
    from openrlhf_act.errors import UsageError

    state = Path(args.state)
    if args.action == "stop":
        if state.is_file():
            stop_recorded(state)
        return 0
    if not args.log:
        raise UsageError("recipe ray-head start needs --log FILE")
    head = LocalRayHead(args.log, num_gpus=args.num_gpus, num_cpus=args.num_cpus)
    try:
        head.start(args.timeout)
    except RayHeadError as exc:
        raise UsageError(str(exc)) from None
    head.save_state(state)
    print(head.address)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from openrlhf_act.errors import UsageError
    from openrlhf_act.recipe_check import display_path, find_recipes, list_settings, read_recipe

    try:
        recipes = [read_recipe(p) for p in find_recipes(args.scripts)]
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    clean_env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if k in os.environ}
    tables = {}
    for recipe in recipes:
        try:
            paper = list_settings(recipe, "paper", clean_env)
            small = {name: value for name, value, _ in list_settings(recipe, "small", clean_env)}
        except RuntimeError as exc:
            raise UsageError(str(exc)) from None
        tables[recipe.path] = [(name, value, small.get(name, value), doc) for name, value, doc in paper]
    shared = set.intersection(*(set(row[0] for row in rows) for rows in tables.values())) if len(tables) > 1 else set()
    if shared:
        first = next(iter(tables.values()))
        print("settings of every recipe (recipes/common.sh):")
        _print_rows([row for row in first if row[0] in shared])
    for recipe in recipes:
        print(f"\n{display_path(recipe.path)}: {recipe.description}")
        _print_rows([row for row in tables[recipe.path] if row[0] not in shared])
    return 0


def _print_rows(rows: list[tuple[str, str, str, str]]) -> None:
    for name, paper, small, doc in rows:
        default = repr(paper) if paper == "" else paper
        if small != paper and name != "PRESET":
            default += f" (small: {small})"
        print(f"  {name}={default}\n      {doc}")


def run_vars(args: argparse.Namespace) -> int:
    from openrlhf_act.recipe_check import recipe_shell_vars

    print(recipe_shell_vars())
    return 0
