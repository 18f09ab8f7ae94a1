"""Turn agent trajectories into ACT data. `build` writes contrast prompts (the main job; with no
--input it collects ScienceWorld gold trajectories first), `collect` replays an environment's expert,
`export` writes the IL / RL / DPO / SFT-on-choice data from the same trajectories and split."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from openrlhf_act.commands.arguments import parse_options, prompt_budget_options, state_config, state_options
from openrlhf_act.errors import UsageError

HELP = "build ACT contrast data (the main job), collect expert trajectories, export data for other stages"
logger = logging.getLogger("openrlhf_act.data")

DEFAULT_VARIATIONS = "train:5"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    build = sub.add_parser(
        "build",
        help="trajectories -> contrast prompts (train.jsonl, eval.jsonl, pairs.jsonl, manifest.json)",
        description=_BUILD_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("--out", required=True, help="output directory")
    _input_options(build)
    _collect_options(build, for_build=True)
    state_options(build)
    _prompt_options(build, for_build=True)
    _split_options(build)
    pairs = build.add_argument_group("contrast prompts")
    pairs.add_argument("--candidates", type=int, default=2, help="K candidates per prompt: expert + K-1 (default 2)")
    pairs.add_argument("--both-orders", action="store_true", help="emit each pair once per gold position")
    pairs.add_argument("--verdict-tag", default="answer", help="tag of the verdict, <TAG>Action k</TAG>")
    pairs.add_argument(
        "--judge-reasoning",
        default="free",
        choices=["free", "none"],
        help="what the prompts ask for: free = reasoning, then the verdict (ACT); none = the verdict alone, "
        "enforced by the reward (the no-reasoning control, recipes/act.sh ACT_REASONING=none)",
    )
    _sampler_options(build)
    _verify_options(build)
    build.set_defaults(func=run_build)

    collect = sub.add_parser(
        "collect",
        help="replay an environment's expert into canonical trajectories",
        description="Replay ScienceWorld's gold action sequences into canonical trajectories (JSONL), in --workers "
        "parallel processes with one JVM each (every JVM closed, also on Ctrl-C). Finished episodes are appended to "
        "<out>.partial as they complete, so an interrupted collection resumes; episodes whose gold path does not "
        "reach score 100 are dropped and counted. Example: openrlhf-act data collect --tasks boil,melt "
        "--variations train:20 --out traj.jsonl",
    )
    collect.add_argument("--env", default="scienceworld", choices=["scienceworld"], help="environment")
    collect.add_argument("--out", help="output JSONL file (resumes from <out>.partial if interrupted)")
    collect.add_argument("--list-tasks", action="store_true", help="list the environment's tasks and exit")
    _collect_options(collect, for_build=False)
    collect.set_defaults(func=run_collect)

    replay = sub.add_parser(
        "replay",
        help="replay expert trajectories in their environment: its own text, admissible actions, scores",
        description=_REPLAY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("--env", required=True, choices=["scienceworld", "alfworld"], help="environment")
    replay.add_argument(
        "--input", action="append", required=True, help="trajectory file(s), comma-separated or repeated"
    )
    replay.add_argument(
        "--format",
        default="auto",
        choices=["auto", "canonical", "eto", "agentgym", "openai", "sharegpt", "react"],
        help="input format (default: detect)",
    )
    replay.add_argument("--out", required=True, help="output JSONL (resumes from <out>.partial if interrupted)")
    replay.add_argument(
        "--simplification",
        default="auto",
        help="ScienceWorld simplifications: auto (easy when the data teleports; default), none, easy, or a list",
    )
    replay.add_argument("--data-dir", default=None, help="ALFWorld data directory (default: $ALFWORLD_DATA)")
    replay.add_argument("--workers", type=int, default=2, help="environment worker processes (default 2)")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay.set_defaults(func=run_replay)

    export = sub.add_parser(
        "export",
        help="IL / RL / DPO / SFT-on-choice / reflection data with the same states and split as a build",
        description=_EXPORT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--kind", required=True, choices=_export_kinds(), help="what to export")
    export.add_argument("--out", required=True, help="output directory (train.jsonl, eval.jsonl, manifest.json)")
    export.add_argument(
        "--build",
        default=None,
        help="a `data build` directory: reuse its inputs, state and split settings (required for dpo, sft_choice, "
        "reflection)",
    )
    _input_options(export)
    state_options(export)
    _prompt_options(export, for_build=False)
    _split_options(export)
    export.add_argument("--with-thought", action="store_true", help="SFT targets include the expert's thought")
    _sampler_options(export, for_export=True)
    export.set_defaults(func=run_export)


_BUILD_DESCRIPTION = """\
Build ACT contrast prompts. Each expert state gets K-1 alternatives sampled from the initial policy
(the model about to be trained), resampled until they differ from the expert action; the prompt shows
the candidates in a seeded, exactly balanced order and the label records which one is the expert's.

With no --input, the embedded default runs: ScienceWorld gold trajectories are collected for --tasks
and --variations (into OUT/trajectories.jsonl, reused when present) and built with the `admissible`
sampler unless --model/--sampler say otherwise.

Examples:
  openrlhf-act data build --out data/act
  openrlhf-act data build --input traj.jsonl --out data/act --sampler vllm --model Qwen/Qwen3-8B
  openrlhf-act data build --input eto/sciworld_sft.json --format eto --out data/act --sampler openai \\
      --base-url http://127.0.0.1:8000/v1 --model qwen3-8b
"""

_REPLAY_DESCRIPTION = """\
Replay every recorded action in the real environment (ScienceWorld offline; ALFWorld on your
$ALFWORLD_DATA) and write canonical trajectories whose observations are the environment's own text,
with the admissible actions and the score at every step and the outcome: build on them, and the model
trains on the text it will be evaluated on. Trajectories are matched to their task and variation (or
game) by their ids, or else by their task text. Known action drifts between environment versions are
mapped and counted; a trajectory whose action the environment rejects is dropped and reported with
its step in OUT_STEM.rejects.jsonl; OUT_STEM.manifest.json holds the counts.

Example:
  openrlhf-act data replay --env scienceworld --input eto/sciworld_sft.json --out sciworld_replayed.jsonl
  openrlhf-act data build --input sciworld_replayed.jsonl --out data/act
"""

_EXPORT_DESCRIPTION = """\
Kinds: sft (agent prompt -> expert action), sft_multiturn (whole episodes, --data.multiturn),
next_action (RL-stage prompts labelled with the expert action), dpo (chosen = expert, rejected = the
build's alternative), sft_choice (contrast prompt -> bare verdict), reflection (agent prompt -> a
rationale of why the expert action beats the build's alternative, written by --model, then the expert
action: Early Experience's self-reflection baseline, recipes/reflection.sh), online_env (one row per
episode, played live by the online executor, recipes/online_env.sh). With --build DIR the export reuses
that build's inputs, state window and task split, so no eval task leaks into any stage's training data.

Example (rationales that do not end with the expert action are resampled, then dropped and counted;
completions are cached in OUT/.cache, so an interrupted export resumes):
  openrlhf-act data export --kind reflection --build data/act --out data/reflection --model Qwen/Qwen3-8B
"""


def _export_kinds() -> list[str]:
    from data_tools.exports import EXPORT_KINDS

    return list(EXPORT_KINDS)


def _input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input")
    group.add_argument("--input", action="append", default=None, help="trajectory file(s), comma-separated or repeated")
    group.add_argument(
        "--format",
        default="auto",
        choices=["auto", "canonical", "eto", "agentgym", "openai", "sharegpt", "react"],
        help="input format (default: detect)",
    )
    group.add_argument("--env", dest="input_env", default=None, help="environment name for formats that lack it")
    group.add_argument(
        "--on-error",
        default="fail",
        choices=["fail", "skip"],
        help="bad input records: stop with file:line (default), or skip them into OUT/rejects.jsonl",
    )


def _collect_options(parser: argparse.ArgumentParser, *, for_build: bool) -> None:
    group = parser.add_argument_group(
        "ScienceWorld collection" + (" (embedded default, no --input)" if for_build else "")
    )
    group.add_argument("--tasks", default=None, help="comma-separated task names (default: a set of fast tasks)")
    group.add_argument(
        "--variations",
        default=DEFAULT_VARIATIONS,
        help=f"SPLIT[:N] with SPLIT in train/dev/test, or ids like 0,3,7-9 (default {DEFAULT_VARIATIONS})",
    )
    group.add_argument("--workers", type=int, default=2, help="parallel environment processes (default 2)")
    group.add_argument("--no-admissible", action="store_true", help="do not store admissible actions per step")


def _prompt_options(parser: argparse.ArgumentParser, *, for_build: bool) -> None:
    from openrlhf_act.prompt_budget import DEFAULT_MAX_PROMPT_TOKENS

    if for_build:
        limit_default = f"default {DEFAULT_MAX_PROMPT_TOKENS}, the recipes' PROMPT_MAX_LEN"
        tokenizer_default = "default: --model when it is a local directory, else a conservative estimate"
    else:
        limit_default = f"default: the build's with --build, else {DEFAULT_MAX_PROMPT_TOKENS}"
        tokenizer_default = "default: the build's with --build, else a conservative estimate"
    prompt_budget_options(
        parser,
        limit=DEFAULT_MAX_PROMPT_TOKENS if for_build else None,
        limit_default=limit_default,
        tokenizer_default=tokenizer_default,
        over="rows whose task and candidates alone do not fit are dropped and counted",
    )


def _split_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("split")
    group.add_argument("--seed", type=int, default=0, help="seed for sampling, gold positions and the split")
    group.add_argument("--eval-ratio", type=float, default=0.1, help="share of tasks held out for eval (default 0.1)")
    group.add_argument(
        "--split-by",
        default="task_id",
        choices=["task_id", "task_family"],
        help="keep whole task ids (default) or whole task families (the part before '/') in one split",
    )


def _sampler_options(parser: argparse.ArgumentParser, *, for_export: bool = False) -> None:
    """The sampler of alternatives (build) or, ``for_export``, of reflection rationales (--kind reflection)."""
    if for_export:
        from data_tools.reflection import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE

        group = parser.add_argument_group("rationale sampler (--kind reflection)")
        group.add_argument("--sampler", default=None, choices=["vllm", "openai", "hf"], help="default: vllm")
        group.add_argument("--model", default=None, help="the model that writes rationales: HF path/name, or served")
        temperature, max_tokens = DEFAULT_TEMPERATURE, DEFAULT_MAX_TOKENS
    else:
        group = parser.add_argument_group("alternative sampler")
        group.add_argument(
            "--sampler",
            default=None,
            choices=["admissible", "vllm", "openai", "hf"],
            help="where alternatives come from (default: vllm when --model is given, else admissible)",
        )
        group.add_argument("--model", default=None, help="the initial policy: HF path/name, or the served model name")
        temperature, max_tokens = 1.0, 512
    group.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (openai sampler)")
    group.add_argument("--temperature", type=float, default=None, help=f"sampling temperature (default {temperature})")
    group.add_argument("--top-p", type=float, default=None, help="nucleus sampling (default 1.0)")
    group.add_argument("--top-k", type=int, default=None, help="top-k sampling (default: off)")
    group.add_argument("--max-tokens", type=int, default=None, help=f"tokens per completion (default {max_tokens})")
    group.add_argument("--chat-template-kwargs", default=None, help="JSON, e.g. '{\"enable_thinking\": false}'")
    group.add_argument("--tensor-parallel-size", type=int, default=None, help="vllm sampler")
    group.add_argument("--max-concurrency", type=int, default=None, help="openai sampler: requests in flight")
    group.add_argument(
        "--sampler-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sampler option, e.g. max_model_len=8192, timeout=60, "
        "engine_kwargs='{\"swap_space\": 8}' (VALUE is read as JSON when it parses, else as a string); the openai "
        "sampler's api_key defaults to $OPENAI_API_KEY (keys, tokens and URL credentials are never written: "
        "manifests, caches and messages show them redacted)",
    )
    group.add_argument("--samples-per-round", type=int, default=1, help="completions per state per round")
    group.add_argument("--rounds", type=int, default=4, help="resampling rounds for states still lacking one")
    group.add_argument(
        "--batch-size",
        type=int,
        default=512 if for_export else 2048,
        help="requests per sampler call (progress and cache granularity)",
    )
    if not for_export:
        group.add_argument(
            "--require-admissible", action="store_true", help="drop alternatives that are not admissible actions"
        )


def _verify_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "verified pairs (input trajectories must name their episode: collected or replayed)"
    )
    group.add_argument(
        "--verify-alternatives",
        action="store_true",
        help="play each alternative from its state in the environment; its verdict (rejected, no_progress, "
        "progress, task_lost, task_won) goes into the label and the manifest",
    )
    group.add_argument(
        "--drop-unverified",
        action="store_true",
        help="(implies --verify-alternatives) drop pairs whose alternative was accepted, did not lose and gained "
        "at least the expert action's score, and pairs that could not be verified",
    )
    group.add_argument("--verify-workers", type=int, default=2, help="environment processes (default 2)")


# ---------------------------------------------------------------------------------------------
def _sampler_choice(args: argparse.Namespace) -> tuple[str, dict]:
    name = args.sampler or ("vllm" if args.model else "admissible")
    options = {
        "model": args.model,
        "base_url": args.base_url,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "max_tokens": args.max_tokens,
        "tensor_parallel_size": args.tensor_parallel_size,
        "max_concurrency": args.max_concurrency,
    }
    if args.chat_template_kwargs:
        try:
            options["chat_template_kwargs"] = json.loads(args.chat_template_kwargs)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--chat-template-kwargs is not valid JSON: {exc.msg}") from None
    options.update(parse_options(args.sampler_option, "--sampler-option"))
    options = {k: v for k, v in options.items() if v is not None}
    if name != "admissible" and "model" not in options:
        raise UsageError(f"the {name} sampler needs --model")
    if name == "admissible" and options:
        raise UsageError(f"the admissible sampler takes no model options (got {', '.join(sorted(options))})")
    return name, options


def _collect_default(args: argparse.Namespace, out_dir: Path) -> Path:
    """The embedded default: ScienceWorld gold trajectories into OUT/trajectories.jsonl (reused)."""
    from data_tools.collect import collect, plan_episodes
    from openrlhf_act.envs.scienceworld import FAST_TASKS

    target = out_dir / "trajectories.jsonl"
    tasks = _tasks(args.tasks) or list(FAST_TASKS)
    if target.exists():
        print(f"reusing {target} (delete it to collect again)", file=sys.stderr)
        return target
    print(
        f"no --input: collecting ScienceWorld gold trajectories for {len(tasks)} tasks, variations {args.variations}",
        file=sys.stderr,
    )
    episodes = _plan(plan_episodes, "scienceworld", tasks, args.variations)
    stats = collect(episodes, target, workers=args.workers, with_admissible=not args.no_admissible)
    print(
        f"collected {stats.kept} trajectories ({stats.steps} steps); dropped {stats.dropped or 'none'}", file=sys.stderr
    )
    return target


def _plan(plan_episodes, env: str, tasks: list[str], variations: str):
    from openrlhf_act.envs.base import EnvError

    try:
        return plan_episodes(env, tasks, variations)
    except (EnvError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _local_dir(model: str | None) -> str | None:
    """The policy's own tokenizer counts prompt tokens when the model is on this machine."""
    return model if model and Path(model).is_dir() else None


def _tasks(raw: str | None) -> list[str]:
    return [t.strip() for t in (raw or "").split(",") if t.strip()]


def run_build(args: argparse.Namespace) -> int:
    from data_tools.build import BuildConfig, build, sequence_of, summary
    from openrlhf_act.recipe_check import recipe_invocation

    out_dir = Path(args.out)
    inputs = sequence_of(args.input)
    sampler, options = _sampler_choice(args)
    if not inputs:
        out_dir.mkdir(parents=True, exist_ok=True)
        inputs = (str(_collect_default(args, out_dir)),)
    if sampler == "admissible":
        print("no --model given: alternatives are random admissible actions (sampler 'admissible')", file=sys.stderr)
    try:
        config = BuildConfig(
            inputs=inputs,
            input_format=args.format,
            env=args.input_env,
            on_error=args.on_error,
            seed=args.seed,
            candidates=args.candidates,
            both_orders=args.both_orders,
            eval_ratio=args.eval_ratio,
            split_by=args.split_by,
            verdict_tag=args.verdict_tag,
            judge_reasoning=args.judge_reasoning,
            max_admissible_in_prompt=args.max_admissible_in_prompt,
            state=state_config(args),
            sampler=sampler,
            sampler_options=options,
            samples_per_round=args.samples_per_round,
            rounds=args.rounds,
            require_admissible=args.require_admissible,
            batch_size=args.batch_size,
            max_prompt_tokens=args.max_prompt_tokens,
            tokenizer=args.tokenizer or _local_dir(args.model),
            verify_alternatives=args.verify_alternatives or args.drop_unverified,
            drop_unverified=args.drop_unverified,
            verify_workers=args.verify_workers,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = build(config, out_dir, progress=None)
    print(summary(result))
    print("\ntrain the ACT stage on it (`openrlhf-act recipe list` shows every setting):\n")
    settings = {"ACT_DATA": str(out_dir.resolve()), **({"MODEL": args.model} if args.model else {})}
    print(recipe_invocation("act.sh", settings))
    return 0


def run_collect(args: argparse.Namespace) -> int:
    from data_tools.collect import collect, plan_episodes

    if args.list_tasks:
        from openrlhf_act.envs.scienceworld import FAST_TASKS, ScienceWorld

        with ScienceWorld() as env:
            for name in env.task_names:
                print(name + ("  (fast)" if name in FAST_TASKS else ""))
        return 0
    if not args.out:
        raise UsageError("data collect needs --out FILE (or --list-tasks)")
    tasks = _tasks(args.tasks)
    if not tasks:
        raise UsageError("data collect needs --tasks (see --list-tasks)")
    episodes = _plan(plan_episodes, args.env, tasks, args.variations)
    stats = collect(episodes, args.out, workers=args.workers, with_admissible=not args.no_admissible)
    print(json.dumps(stats.to_json(), indent=2))
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from data_tools.build import sequence_of
    from data_tools.replay import ReplayConfig, replay
    from openrlhf_act.envs.base import EnvError

    config = ReplayConfig(
        env=args.env,
        inputs=sequence_of(args.input),
        input_format=args.format,
        simplification=args.simplification,
        data_dir=args.data_dir,
        workers=args.workers,
    )
    try:
        stats = replay(config, args.out, progress=False if args.no_progress else None)
    except EnvError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(stats.to_json(), indent=2))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from data_tools.exports import ExportConfig, export

    try:
        config = ExportConfig.from_args(args, _reflection_config(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    manifest = export(config, Path(args.out))
    rows = manifest["counts"]["rows"]
    print(f"exported {args.kind}: {rows['train']} train / {rows['eval']} eval rows in {args.out}")
    return 0


def _reflection_config(args: argparse.Namespace):
    """The rationale sampler of ``--kind reflection``; the other kinds take no sampler option."""
    from data_tools.reflection import ReflectionConfig

    if args.kind != "reflection":
        if args.sampler or args.model or args.sampler_option:
            raise UsageError(f"--kind {args.kind} samples nothing: --sampler/--model are for --kind reflection")
        return None
    name, options = _sampler_choice(argparse.Namespace(**{**vars(args), "sampler": args.sampler or "vllm"}))
    return ReflectionConfig(
        sampler=name,
        sampler_options=options,
        samples_per_round=args.samples_per_round,
        rounds=args.rounds,
        batch_size=args.batch_size,
    )
