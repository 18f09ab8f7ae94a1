"""``openrlhf-act data build``: trajectories -> states -> alternatives -> contrast prompts.

Outputs in the build directory: ``train.jsonl`` and ``eval.jsonl`` (contrast prompts, the data
contract), ``pairs.jsonl`` (the pairs behind them, for the DPO and SFT-on-choice exports) and
``manifest.json`` (counts, drop reasons, seed, full config, input hashes, package and environment versions). All of
them are written to temporary files first and renamed only once everything succeeded; the manifest
goes last. Same seed and inputs give byte-identical outputs (the manifest's verification seconds aside).

With ``verify_alternatives`` every pair's alternatives are played in the environment
(:mod:`data_tools.verify`): the verdicts go into the labels and the manifest, and ``drop_unverified``
drops the pairs an alternative is as good as the expert's action in (and those it could not verify).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_tools.alternatives import AlternativeConfig, AlternativeStats, sample_alternatives
from data_tools.cache import SampleCache
from data_tools.pairs import contrast_rows, fitted_contrast_rows, pair_to_json
from data_tools.splits import eval_groups, split_of
from data_tools.verify import Episode, Verification, VerifyStats, episode_of, verify_pairs
from openrlhf_act import __version__
from openrlhf_act.envs.registry import ENVS, env_versions
from openrlhf_act.errors import DataError
from openrlhf_act.files import atomic_open, sha256_file, write_json, write_rows
from openrlhf_act.prompt_budget import (
    DEFAULT_MAX_PROMPT_TOKENS,
    FittedConfig,
    PromptBudget,
    dropped_prompts,
    fit_agent_prompts,
    prompt_manifest,
)
from openrlhf_act.prompts import DEFAULT_MAX_ADMISSIBLE_IN_PROMPT
from openrlhf_act.schema import JUDGE_REASONING, ContrastPair, State, decode_judgment_label
from openrlhf_act.states import StateConfig, observation_clipped, states_from_trajectory

logger = logging.getLogger(__name__)
MANIFEST_SCHEMA = "openrlhf-act/build-manifest/v1"
LOW_ACCEPTED_SHARE = 0.5
# --drop-unverified's drop reasons: an alternative as good as the expert's action; no verdict at all.
AS_GOOD, UNVERIFIED = "alternative_as_good", "unverified"


@dataclass(frozen=True)
class BuildConfig(FittedConfig):
    """Everything that determines a build's outputs (recorded in full in the manifest)."""

    inputs: tuple[str, ...]
    input_format: str = "auto"
    env: str | None = None
    on_error: str = "fail"
    seed: int = 0
    candidates: int = 2
    both_orders: bool = False
    eval_ratio: float = 0.1
    split_by: str = "task_id"
    verdict_tag: str = "answer"
    judge_reasoning: str = "free"  # "none": the no-reasoning control's prompts and labels
    max_admissible_in_prompt: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT
    state: StateConfig = field(default_factory=StateConfig)
    sampler: str = "admissible"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    samples_per_round: int = 1
    rounds: int = 4
    require_admissible: bool = False
    batch_size: int = 2048
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS
    tokenizer: str | None = None
    verify_alternatives: bool = False
    drop_unverified: bool = False  # implies verify_alternatives
    verify_workers: int = 2

    def __post_init__(self) -> None:
        if self.candidates < 2:
            raise ValueError("--candidates must be at least 2")
        if self.verify_workers < 1:
            raise ValueError("--verify-workers must be at least 1")
        if self.max_prompt_tokens <= 0:
            raise ValueError("--max-prompt-tokens must be positive")
        if self.on_error not in ("fail", "skip"):
            raise ValueError("--on-error must be 'fail' or 'skip'")
        if self.judge_reasoning not in JUDGE_REASONING:
            raise ValueError(f"--judge-reasoning must be one of {', '.join(JUDGE_REASONING)}")

    def alternative_config(self) -> AlternativeConfig:
        return AlternativeConfig(
            alternatives=self.candidates - 1,
            samples_per_round=self.samples_per_round,
            rounds=self.rounds,
            require_admissible=self.require_admissible,
            seed=self.seed,
            batch_size=self.batch_size,
            max_admissible_in_prompt=self.max_admissible_in_prompt,
        )

    @property
    def verifies(self) -> bool:
        return self.verify_alternatives or self.drop_unverified

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = list(self.inputs)
        return data


@dataclass
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]
    cached_requests: int = 0


def load_states(
    config: BuildConfig, reader_stats, rejects, episodes: dict[str, Episode] | None = None
) -> tuple[list[State], Counter[str], int]:
    """Read every input (streaming) into states; returns (states, notes, trajectories). ``episodes``
    collects what verification needs of each trajectory (with ``--on-error fail`` a trajectory that does
    not name its episode stops the build here, before any sampling)."""
    from data_tools.readers import read_trajectories

    states: list[State] = []
    notes: Counter[str] = Counter()
    trajectories = 0
    seen_tasks: set[str] = set()
    for trajectory in read_trajectories(
        list(config.inputs),
        config.input_format,
        env=config.env,
        on_error=config.on_error,
        rejects=rejects,
        stats=reader_stats,
    ):
        if trajectory.task_id in seen_tasks:
            notes["duplicate_task_id_trajectories"] += 1
        seen_tasks.add(trajectory.task_id)
        trajectories += 1
        if episodes is not None:
            episode = episode_of(trajectory)
            if episode.error and config.on_error == "fail":
                raise DataError(f"{episode.error} (or pass --on-error skip to count its pairs as unverified)")
            episodes[trajectory.task_id] = episode
        notes["observations_clipped"] += sum(observation_clipped(s.observation, config.state) for s in trajectory.steps)
        states.extend(states_from_trajectory(trajectory, config.state))
    keys = Counter(s.key for s in states)
    duplicates = {k for k, n in keys.items() if n > 1}
    if duplicates:
        example = sorted(duplicates)[0]
        raise DataError(
            f"{len(duplicates)} states share a task_id and step (e.g. {example!r}): trajectories need unique task ids"
        )
    return states, notes, trajectories


def build(config: BuildConfig, out_dir: str | Path, *, sampler=None, progress: bool | None = None) -> BuildResult:
    """Run the whole build; ``sampler`` may be injected (tests, benchmarks), else made from the config.
    ``progress`` None shows bars only on a terminal."""
    from tqdm import tqdm

    from data_tools.readers import ReaderStats, RejectSink
    from data_tools.samplers import make_sampler

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reader_stats = ReaderStats()
    rejects = RejectSink() if config.on_error == "skip" else None
    episodes: dict[str, Episode] | None = {} if config.verifies else None
    states, notes, trajectories = load_states(config, reader_stats, rejects, episodes)
    if not states:
        raise DataError("no expert states in the input: nothing to build (see the reader counts with -v)")
    budgets = {"sampling": config.prompt_budget()}
    budgets["train"], budgets["eval"] = budgets["sampling"].sibling(), budgets["sampling"].sibling()
    fitted = [fit.state for fit in fit_agent_prompts(budgets["sampling"], states)]
    if not fitted:
        raise DataError(f"no state's agent prompt fits --max-prompt-tokens {config.max_prompt_tokens}")

    own_sampler = sampler is None
    if own_sampler:
        sampler = make_sampler(config.sampler, **config.sampler_options)
    cache = SampleCache(out / ".cache" / f"samples-{config.sampler}.jsonl")
    alt_stats = AlternativeStats()
    try:
        with tqdm(
            total=len(fitted),
            desc=f"sample ({config.sampler})",
            unit="state",
            disable=None if progress is None else not progress,
        ) as bar:
            alternatives = sample_alternatives(fitted, sampler, cache, config.alternative_config(), alt_stats, bar)
    finally:
        cache.close()
        if own_sampler:
            sampler.close()

    if not alternatives:
        raise DataError(no_pairs_reason(config.sampler, fitted, alt_stats))
    eval_set = eval_groups((s.task_id for s in states), config.eval_ratio, config.seed, config.split_by)
    pairs: dict[str, list[ContrastPair]] = {"train": [], "eval": []}
    for state in fitted:
        if state.key in alternatives:
            pairs[split_of(state.task_id, eval_set, config.split_by)].append(
                ContrastPair(state, alternatives[state.key])
            )
    verified: dict[str, Verification] = {}
    verify_stats: VerifyStats | None = None
    verify_drops: Counter[str] = Counter()
    if episodes is not None:
        all_pairs = [p for split in ("train", "eval") for p in pairs[split]]
        verified, verify_stats = verify_pairs(episodes, all_pairs, workers=config.verify_workers, progress=progress)
        if config.drop_unverified:
            pairs = {split: _keep_verified(pairs[split], verified, verify_drops) for split in pairs}
    labels = {key: v.to_json() for key, v in verified.items()}
    rows = {
        split: contrast_rows(
            pairs[split],
            seed=config.seed,
            split=split,
            both_orders=config.both_orders,
            tag=config.verdict_tag,
            budget=budgets[split],
            verified=labels,
            reasoning=config.judge_reasoning,
        )
        for split in ("train", "eval")
    }
    manifest = _manifest(
        config, sampler, trajectories, states, pairs, rows, eval_set, reader_stats, alt_stats, notes, budgets
    )
    if verify_stats is not None:
        manifest["drops"]["verification"] = {k: verify_drops[k] for k in (AS_GOOD, UNVERIFIED)}
        manifest["drops"]["states_without_pair"] -= sum(verify_drops.values())
        manifest["verification"] = verify_stats.to_json()
    _write_outputs(out, rows, pairs, manifest, rejects, labels)
    return BuildResult(out, manifest, alt_stats.cached_requests)


def _keep_verified(
    pairs: list[ContrastPair], verified: dict[str, Verification], drops: Counter[str]
) -> list[ContrastPair]:
    """``--drop-unverified``: the pairs the environment confirmed the expert's action is better in."""
    kept = []
    for pair in pairs:
        verification = verified.get(pair.state.key)
        if verification is None:
            drops[UNVERIFIED] += 1
        elif verification.as_good_as_expert():
            drops[AS_GOOD] += 1
        else:
            kept.append(pair)
    return kept


def no_pairs_reason(sampler: str, states: list[State], stats: AlternativeStats) -> str:
    """Why a build made no pair at all, and what to do about it (the build then writes nothing)."""
    seen = f"{len(states)} expert states, {stats.requests} sampler requests"
    if stats.rejected:
        seen += ", rejected completions: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected.items()))
    if sampler == "admissible" and not any(state.admissible for state in states):
        return (
            f"no contrast pair ({seen}): no step of the input lists its admissible actions, and the 'admissible' "
            "sampler (the one used when no --model is given) draws alternatives from them. Pass --model to sample "
            "alternatives from a policy (with --sampler vllm, hf or openai), or replay the trajectories in their "
            "environment to get the admissible actions"
        )
    return (
        f"no contrast pair ({seen}): no state got a usable alternative. Check that the policy answers in the "
        "agent prompt's format ('Action: ...'), or raise --rounds / --samples-per-round / --temperature"
    )


def _gold_positions(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(decode_judgment_label(r["label"]).answer for r in rows)
    return {str(k): counts[k] for k in sorted(counts)}


def manifest_head(schema: str, config: dict[str, Any], inputs: Sequence[str]) -> dict[str, Any]:
    """What every manifest of ours (build, export) starts with: its schema, the package, the full
    configuration and a hash of every input file."""
    return {
        "schema": schema,
        "package": {"name": "openrlhf-act", "version": __version__},
        "config": config,
        "inputs": [{"path": str(p), "sha256": sha256_file(p) if Path(p).is_file() else None} for p in inputs],
    }


def _manifest(config, sampler, trajectories, states, pairs, rows, eval_set, reader_stats, alt_stats, notes, budgets):
    tasks = {split: len({p.state.task_id for p in pairs[split]}) for split in pairs}
    return {
        **manifest_head(MANIFEST_SCHEMA, config.to_json(), config.inputs),
        "sampler": {"name": config.sampler, "fingerprint": sampler.fingerprint()},
        # The environments the states come from, as installed here (they collect, replay and verify).
        "env_versions": {env: env_versions(env) for env in sorted({s.env for s in states}) if env in ENVS},
        "counts": {
            "trajectories": trajectories,
            "states": len(states),
            "pairs": {split: len(pairs[split]) for split in pairs},
            "rows": {split: len(rows[split]) for split in rows},
            "tasks": tasks,
            "eval_groups": len(eval_set),
        },
        "gold_positions": {split: _gold_positions(rows[split]) for split in rows},
        "prompt_tokens": prompt_manifest(budgets),
        "drops": {
            "reader": reader_stats.to_json(),
            "alternatives": alt_stats.to_json(),
            "states_without_pair": len(states) - sum(len(v) for v in pairs.values()),
            "prompt_budget": dropped_prompts(budgets.values()),
            "notes": dict(sorted(notes.items())),
        },
    }


def _write_outputs(out: Path, rows, pairs, manifest, rejects, verified: dict[str, dict[str, Any]]) -> None:
    """All data files are staged as ``.tmp`` and renamed together; the manifest is renamed last."""
    with (
        atomic_open(out / "train.jsonl") as train,
        atomic_open(out / "eval.jsonl") as evaluation,
        atomic_open(out / "pairs.jsonl") as pair_file,
    ):
        write_rows(train, rows["train"])
        write_rows(evaluation, rows["eval"])
        write_rows(
            pair_file,
            (
                pair_to_json(pair, split, verified.get(pair.state.key))
                for split in ("train", "eval")
                for pair in pairs[split]
            ),
        )
    if rejects is not None:
        rejects.write(out / "rejects.jsonl")
    write_json(out / "manifest.json", manifest)


def iter_contrast_rows(config: BuildConfig, budget: PromptBudget | None = None) -> Iterator[dict[str, Any]]:
    """Streaming ingest + states + contrast prompts fitted to the budget, with a placeholder alternative
    and no sampling (so no sampling prompt either): what the ingest benchmark measures (one trajectory
    in memory at a time)."""
    from data_tools.readers import read_trajectories

    budget = budget or config.prompt_budget()
    for trajectory in read_trajectories(list(config.inputs), config.input_format, env=config.env):
        states = states_from_trajectory(trajectory, config.state)
        placed = [
            (ContrastPair(state, ("look around",) * (config.candidates - 1)), i % config.candidates)
            for i, state in enumerate(states)
        ]
        yield from fitted_contrast_rows(placed, budget, config.verdict_tag)


def summary(result: BuildResult) -> str:
    m = result.manifest
    counts, drops = m["counts"], m["drops"]
    dropped = drops["alternatives"]["dropped_states"]
    rejected = drops["alternatives"]["rejected_completions"]
    verification = [verification_line(m["verification"], drops["verification"])] if "verification" in m else []
    return "\n".join(
        [
            f"built {counts['rows']['train']} train / {counts['rows']['eval']} eval contrast prompts "
            f"from {counts['trajectories']} trajectories, {counts['states']} states "
            f"({counts['tasks']['train']} train / {counts['tasks']['eval']} eval tasks) in {result.out_dir}",
            f"sampler: {m['sampler']['name']}; {accepted_line(drops['alternatives'])}",
            f"rejected completions: {rejected or 'none'}; states without an alternative: {dropped or 'none'}",
            f"gold positions: train {m['gold_positions']['train']}, eval {m['gold_positions']['eval']}",
            f"sampling requests: {m['drops']['alternatives']['requests']} "
            f"({result.cached_requests} reused from the cache)",
            prompt_tokens_line(m["prompt_tokens"], drops["prompt_budget"]),
            *verification,
        ]
    )


def verification_line(verification: dict[str, Any], dropped: dict[str, int]) -> str:
    """The environment's verdicts on the alternatives, what verifying cost, and what it dropped."""
    verdicts = ", ".join(f"{k} {v}" for k, v in verification["verdicts"].items() if v) or "none"
    failed, mode = verification["failed_pairs"], verification["mode"] or "none played"
    return (
        f"verified {verification['verified_pairs']} of {verification['pairs']} pairs ({mode}): "
        f"{verdicts}; unverified: {failed or 'none'}; cost {verification['env_steps']} env steps, "
        f"{verification['seconds']:.1f} s ({verification['steps_per_pair']} steps, "
        f"{verification['seconds_per_pair']} s per pair); dropped: {dropped if any(dropped.values()) else 'none'}"
    )


def prompt_tokens_line(tokens: dict[str, Any], dropped: dict[str, int]) -> str:
    """The longest prompts per split against the limit, and the rows that could not fit."""
    splits = ", ".join(
        f"{split} p95 {tokens[split]['p95']} / max {tokens[split]['max']}" for split in ("train", "eval")
    )
    return (
        f"prompt tokens (limit {tokens['max_prompt_tokens']}, {tokens['counter']}): {splits}; "
        f"dropped as too long: {dropped or 'none'}"
    )


def accepted_line(alternatives: dict[str, Any]) -> str:
    """The share of sampled completions that were usable alternatives, with a warning when most were
    not: then the policy does not follow the agent prompt and the pairs teach little."""
    judged, accepted = alternatives["completions"], alternatives["accepted_completions"]
    if not judged:
        return "no completion sampled"
    line = f"completions accepted: {accepted} of {judged} ({100 * accepted / judged:.1f} %)"
    if accepted < LOW_ACCEPTED_SHARE * judged:
        line += " -- WARNING: most completions are not a usable action; see the rejected reasons below"
    return line


def sequence_of(values: Sequence[str] | str | None) -> tuple[str, ...]:
    if not values:
        return ()
    if isinstance(values, str):
        values = [values]
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())
