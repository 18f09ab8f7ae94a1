"""Measure agents the way the paper does. `episodes` plays live environments (ALFWorld 140 seen / 134
unseen games, WebShop's 500 test goals, ScienceWorld test variations) and reports success rate and
score per task and split; `next-action` and `judgment` score held-out states and contrast pairs
offline (`judgment --rationale free|none|injected-wrong`: the paper's judgment analysis); `reasoning`
runs lm-evaluation-harness (MATH-500, GPQA-Diamond) on a checkpoint; `report` compares runs side by
side and against the paper's tables. `protocols` lists the
named protocols (`episodes --protocol`: ScienceWorld official and ETO, ALFWorld seen / unseen, WebShop
500 and ETO's 200 goals). Every run directory resumes where it stopped."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from openrlhf_act.commands.arguments import parse_ids, parse_options, prompt_budget_options, state_config, state_options
from openrlhf_act.errors import UsageError

# (environment, episodes, step limit(s), protocol record, environment options) of one `eval episodes` call
Chosen = tuple[str, list[Any], int | dict[str, int] | None, dict[str, Any] | None, dict[str, Any]]

HELP = "evaluate agents: live episodes, next-action and judgment accuracy, general reasoning, reports vs the paper"
POLICIES = ("expert", "vllm", "openai", "hf")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="ACTION", required=True)

    tasks = sub.add_parser("tasks", help="list an environment's tasks and splits")
    tasks.add_argument("env", choices=_env_names(), help="environment")
    tasks.add_argument("--split", default=None, help="also count the episodes of this split")
    _env_option(tasks)
    tasks.set_defaults(func=run_tasks)

    protocols = sub.add_parser("protocols", help="list the evaluation protocols `episodes --protocol` plays")
    protocols.set_defaults(func=run_protocols)

    episodes = sub.add_parser("episodes", help="play episodes with a policy; success rate and score per task")
    episodes.add_argument("--env", default=None, choices=_env_names(), help="environment (or give --protocol)")
    episodes.add_argument(
        "--protocol",
        default=None,
        help="a named protocol (see `eval protocols`): it sets the environment, episodes, step limits, "
        "environment options and score; the run records it",
    )
    episodes.add_argument("--out", required=True, help="run directory (resumes if it exists)")
    episodes.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    episodes.add_argument(
        "--split",
        default=None,
        help="comma-separated splits (default: the benchmark's evaluation splits: ScienceWorld test, "
        "ALFWorld valid_seen,valid_unseen, WebShop test); with --protocol one of its splits (default: its first)",
    )
    episodes.add_argument("--episodes", type=int, default=None, help="episodes per task and split (default: all)")
    episodes.add_argument(
        "--variations", default=None, help="variation / goal ids, e.g. 0-9,12 (instead of --episodes)"
    )
    episodes.add_argument("--games", nargs="+", default=None, help="ALFWorld game files to play instead of a split")
    episodes.add_argument("--workers", type=int, default=2, help="environment processes (default 2)")
    episodes.add_argument("--max-steps", type=int, default=None, help="step limit (default: the environment's)")
    episodes.add_argument(
        "--step-timeout",
        type=float,
        default=300.0,
        help="seconds an environment step may take before its process is killed (episode starts: at least 300)",
    )
    episodes.add_argument("--retries", type=int, default=1, help="retries of an episode whose environment failed")
    state_options(episodes)
    prompt_budget_options(
        episodes,
        limit=None,
        limit_default="default: no limit; give the limit the training data was built or exported with, and its "
        "--tokenizer, so the policy sees the prompts it was trained on",
        tokenizer_default="default: a conservative estimate, as the data's without --tokenizer",
        over="a step whose task and instruction alone do not fit ends its episode with status prompt_over_budget",
    )
    _env_option(episodes)
    _policy_options(episodes)
    episodes.set_defaults(func=run_episodes)

    for name, helptext, func in (
        ("next-action", "next-action accuracy on an eval.jsonl of `data export --kind next_action`", run_next_action),
        ("judgment", "judgment accuracy, position bias and swap consistency on an ACT eval.jsonl", run_judgment),
    ):
        offline = sub.add_parser(name, help=helptext)
        offline.add_argument("--data", required=True, help="eval.jsonl")
        offline.add_argument("--out", required=True, help="run directory (resumes if it exists)")
        offline.add_argument("--limit", type=int, default=None, help="only the first N rows")
        offline.add_argument("--chunk-size", type=int, default=256, help="prompts per policy call")
        if name == "judgment":
            offline.add_argument("--no-swap", action="store_true", help="skip the swapped-order re-ask")
            offline.add_argument(
                "--rationale",
                default="free",
                choices=["free", "none", "injected-wrong"],
                help="the paper's judgment analysis: free = reason, then the verdict (default); none = the verdict "
                "alone, a response that reasons is malformed (sets --thinking off unless given); injected-wrong = "
                "the reply is pre-filled with a rationale arguing for a wrong candidate",
            )
        _policy_options(offline)
        offline.set_defaults(func=func)

    _reasoning_parser(sub)

    report = sub.add_parser("report", help="Markdown table + PNG plots comparing run directories and the paper")
    report.add_argument("runs", nargs="+", help="run directories (label them as NAME=DIR)")
    report.add_argument("--out", required=True, help="directory for report.md and the plots")
    report.add_argument("--paper", choices=["v1", "v2", "none"], default="v2", help="paper table to compare with")
    report.add_argument("--no-plots", action="store_true", help="Markdown only (no matplotlib needed)")
    report.set_defaults(func=run_report)


def _env_names() -> list[str]:
    from openrlhf_act.envs.registry import ENVS

    return list(ENVS)


def _env_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment option, e.g. url=http://127.0.0.1:36001 (webshop), data_dir=... (alfworld)",
    )


def _policy_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("policy")
    group.add_argument("--policy", required=True, choices=POLICIES, help="expert checks the harness itself")
    group.add_argument("--model", default=None, help="model path / served model name (vllm, openai, hf)")
    group.add_argument(
        "--policy-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sampler option, e.g. max_tokens=1024, base_url=..., temperature=0.7 (default temperature 0); api_key "
        "defaults to $OPENAI_API_KEY (secrets are never written: run.json shows them redacted)",
    )
    group.add_argument(
        "--thinking",
        default=None,
        choices=["on", "off"],
        help="the prompting baselines: the chat template's enable_thinking (Qwen3 and other hybrid-thinking "
        "templates); recorded in the run and shown by `eval report` (default: the template's own default)",
    )
    group.add_argument("--seed", type=int, default=0, help="base seed of per-request sampling seeds")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def _policy(args: argparse.Namespace, *, thinking: str | None = None):
    """The policy of the command line; ``thinking`` is the command's default for ``--thinking``."""
    from data_tools.samplers import make_sampler
    from openrlhf_act.eval.policies import make_policy, with_thinking

    options = parse_options(args.policy_option, "policy option")
    if args.model:
        options["model"] = args.model
    if args.thinking is not None:
        options = with_thinking(options, args.thinking == "on")
    elif thinking is not None and args.policy != "expert":
        options = with_thinking(options, thinking == "on")
    return make_policy(args.policy, options, make_sampler=make_sampler)


class _Errors:
    """Turn environment and backend failures into the CLI's one-line errors."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        from data_tools.samplers.base import SamplerError
        from openrlhf_act.envs.base import EnvError

        if exc_type is not None and issubclass(exc_type, (EnvError, SamplerError)):
            raise UsageError(str(exc)) from exc
        return False


def run_tasks(args: argparse.Namespace) -> int:
    from openrlhf_act.envs.registry import env_class, list_tasks, resolve_episodes

    with _Errors():
        options = parse_options(args.env_option, "environment option")
        adapter = env_class(args.env)
        print(f"{adapter.name}: {adapter.description}")
        print(f"splits: {', '.join(adapter.splits)} (evaluation: {', '.join(adapter.eval_splits)})")
        names = list_tasks(args.env, **options)
        counts: dict[str, int] = {}
        if args.split:
            for task in resolve_episodes(args.env, split=args.split, options=options):
                counts[task.name] = counts.get(task.name, 0) + 1
        for name in names:
            print(f"  {name}" + (f"  ({counts.get(name, 0)} episodes in {args.split})" if args.split else ""))
    return 0


def run_protocols(args: argparse.Namespace) -> int:
    from openrlhf_act.eval.protocols import PROTOCOLS

    for protocol in PROTOCOLS.values():
        limits = protocol.step_limits()
        steps = limits if isinstance(limits, int) else f"per task, {min(limits.values())}-{max(limits.values())}"
        splits = ", ".join(f"{name} {selection.count}" for name, selection in protocol.splits.items())
        options = ", ".join(f"{k}={v}" for k, v in protocol.env_options.items()) or "-"
        print(f"{protocol.name} ({protocol.env}): {protocol.description}")
        print(f"  episodes: {splits}; steps: {steps}; options: {options}; score: {protocol.score_metric}")
        print(f"  paper column: {protocol.paper_column or '-'}; source: {protocol.source}")
    return 0


def _protocol_episodes(args: argparse.Namespace, options: dict[str, Any]) -> Chosen:
    """The episodes of ``--protocol``; flags that contradict it are usage errors."""
    from openrlhf_act.eval.protocols import get_protocol

    protocol = get_protocol(args.protocol)
    fixed = [
        flag
        for flag, value in (
            ("--tasks", args.tasks),
            ("--episodes", args.episodes),
            ("--variations", args.variations),
            ("--games", args.games),
        )
        if value is not None
    ]
    if fixed:
        raise UsageError(f"protocol {protocol.name} fixes the episodes: drop {', '.join(fixed)}")
    if args.env and args.env != protocol.env:
        raise UsageError(f"protocol {protocol.name} plays {protocol.env}, not {args.env}")
    limits = protocol.step_limits()
    if args.max_steps is not None and args.max_steps != limits:
        raise UsageError(f"protocol {protocol.name} fixes the step limit ({limits}): drop --max-steps")
    clash = sorted(k for k, v in protocol.env_options.items() if options.get(k, v) != v)
    if clash:
        fixed_options = ", ".join(f"{k}={protocol.env_options[k]}" for k in clash)
        raise UsageError(f"protocol {protocol.name} sets {fixed_options}: drop that --env-option")
    options = {**options, **protocol.env_options}
    split = args.split or protocol.default_split
    protocol.selection(split)  # an unknown split is an error before any simulator starts
    return protocol.env, protocol.episodes(split, options), limits, protocol.record(split), options


def _chosen_episodes(args: argparse.Namespace, options: dict[str, Any]) -> Chosen:
    """The episodes the explicit flags name (no protocol)."""
    from openrlhf_act.envs.registry import env_class, resolve_episodes

    if not args.env:
        raise UsageError("give --env or --protocol")
    adapter = env_class(args.env)
    splits = args.split.split(",") if args.split else list(adapter.eval_splits)
    tasks = [t for t in (args.tasks or "").split(",") if t]
    variations = parse_ids(args.variations)
    episodes = []
    for split in splits:
        episodes += resolve_episodes(
            args.env,
            split=split,
            tasks=tasks or None,
            episodes=args.episodes,
            variations=variations,
            games=args.games,
            options=options,
        )
        if args.games:
            break
    return args.env, episodes, args.max_steps, None, options


def run_episodes(args: argparse.Namespace) -> int:
    from openrlhf_act.envs.registry import expert_options
    from openrlhf_act.eval.episodes import EpisodeRunner

    with _Errors():
        options = parse_options(args.env_option, "environment option")
        # everything is checked before any policy or worker starts
        choose = _protocol_episodes if args.protocol else _chosen_episodes
        env, episodes, max_steps, protocol, options = choose(args, options)
        policy = _policy(args)
        if policy.needs_expert:
            options = {**options, **expert_options(env)}
        try:
            runner = EpisodeRunner(
                env,
                episodes,
                policy,
                args.out,
                workers=args.workers,
                env_options=options,
                max_steps=max_steps,
                protocol=protocol,
                state_config=state_config(args),
                max_admissible=args.max_admissible_in_prompt,
                step_timeout=args.step_timeout,
                retries=args.retries,
                seed=args.seed,
                progress=not args.no_progress,
                max_prompt_tokens=args.max_prompt_tokens,
                tokenizer=args.tokenizer,
            )
            runner.run()
        finally:
            policy.close()
    print((Path(args.out) / "summary.md").read_text())
    return 0


def run_next_action(args: argparse.Namespace) -> int:
    from openrlhf_act.eval.next_action import run_next_action as run

    return _offline(
        args,
        lambda policy: run(
            args.data,
            policy,
            args.out,
            chunk_size=args.chunk_size,
            limit=args.limit,
            seed=args.seed,
            progress=not args.no_progress,
        ),
    )


def run_judgment(args: argparse.Namespace) -> int:
    from openrlhf_act.eval.judgment import run_judgment as run

    return _offline(
        args,
        lambda policy: run(
            args.data,
            policy,
            args.out,
            swap=not args.no_swap,
            rationale=args.rationale,
            chunk_size=args.chunk_size,
            limit=args.limit,
            seed=args.seed,
            progress=not args.no_progress,
        ),
    )


def _offline(args: argparse.Namespace, run) -> int:
    with _Errors():
        policy = _policy(args, thinking="off" if getattr(args, "rationale", None) == "none" else None)
        try:
            run(policy)
        finally:
            policy.close()
    print((Path(args.out) / "summary.md").read_text())
    return 0


def run_report(args: argparse.Namespace) -> int:
    from openrlhf_act.eval.report import write_report

    path = write_report(
        args.runs, args.out, paper=None if args.paper == "none" else args.paper, plots=not args.no_plots
    )
    print(path.read_text())
    return 0


# ---- eval reasoning ---------------------------------------------------------------------------------
def _reasoning_parser(sub) -> None:
    reasoning = sub.add_parser(
        "reasoning", help="general reasoning benchmarks (MATH-500, GPQA-Diamond) through lm-evaluation-harness"
    )
    reasoning.add_argument("--model", required=True, help="checkpoint directory or model name")
    reasoning.add_argument(
        "--tasks",
        default="minerva_math500,gpqa_diamond_cot_zeroshot",
        help="comma-separated lm_eval tasks (default: MATH-500 and GPQA-Diamond, the paper's two; "
        "list them with `lm-eval ls tasks`)",
    )
    reasoning.add_argument("--backend", choices=["vllm", "hf"], default="vllm", help="lm_eval model backend")
    reasoning.add_argument("--out", required=True, help="run directory (resumes per task if it exists)")
    reasoning.add_argument("--limit", type=int, default=None, help="only the first N documents of each task")
    reasoning.add_argument("--include-path", default=None, help="a directory of your own lm_eval task YAMLs")
    reasoning.add_argument(
        "--apply-chat-template",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask through the model's chat template (default: when its tokenizer has one)",
    )
    reasoning.add_argument(
        "--thinking", choices=["on", "off"], default=None, help="the chat template's thinking switch (default: its own)"
    )
    reasoning.add_argument(
        "--gen-kwargs",
        default=None,
        help="generation settings over the tasks', e.g. temperature=0.6,max_gen_toks=32768",
    )
    reasoning.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default: the task's)")
    reasoning.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="lm_eval model argument, e.g. max_model_len=32768, tensor_parallel_size=2, dtype=bfloat16",
    )
    reasoning.add_argument(
        "--batch-size", default=None, help="lm_eval batch size, a number or auto (default: vllm auto, hf 1)"
    )
    reasoning.add_argument("--seed", type=int, default=0, help="seed of sampling and few-shot selection")
    reasoning.set_defaults(func=run_reasoning)


def run_reasoning(args: argparse.Namespace) -> int:
    from openrlhf_act.eval.reasoning import run_reasoning as run

    gen_kwargs = parse_options(args.gen_kwargs.split(","), "--gen-kwargs") if args.gen_kwargs else None
    run(
        args.model,
        [t.strip() for t in args.tasks.split(",") if t.strip()],
        args.out,
        backend=args.backend,
        limit=args.limit,
        include_path=args.include_path,
        chat_template=args.apply_chat_template,
        thinking=args.thinking,
        gen_kwargs=gen_kwargs,
        num_fewshot=args.num_fewshot,
        model_args=parse_options(args.model_arg, "model argument"),
        batch_size=int(args.batch_size) if (args.batch_size or "").isdigit() else args.batch_size,
        seed=args.seed,
    )
    print((Path(args.out) / "summary.md").read_text())
    return 0
