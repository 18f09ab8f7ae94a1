"""``eval episodes``: a policy plays whole episodes; success rate and score per task and split.

The agent sees exactly the prompt of IL data and ACT sampling: ``openrlhf_act.states.make_state`` over
the live episode's turns, rendered by ``openrlhf_act.prompts.agent_messages``; its reply is read by
``openrlhf_act.actions.read_action`` (the rule the ``next_action`` reward scores and the samplers
accept alternatives by; a reply cut off by the length limit executes nothing). Environments run in worker processes
(:mod:`openrlhf_act.envs.pool`) and every round makes *one* batched policy call for all episodes
waiting for an action, then dispatches the actions to their workers.

A reply with no recognisable action is not sent to the environment: the turn counts against the
step limit, is recorded as unparseable, and the agent is told so as its next observation.

With a prompt budget (``max_prompt_tokens``, ``tokenizer``: ``--max-prompt-tokens`` / ``--tokenizer``
as in ``data build`` and ``data export``) every step's prompt is fitted exactly as the data's agent
prompts are (:func:`openrlhf_act.prompt_budget.agent_prompt_fits`: oldest turns first, then the
observation clipped), so a model trained on fitted rows is evaluated on the same text. A step whose
prompt cannot fit even so ends its episode with status ``prompt_over_budget`` (a final outcome,
not retried on resume; counted in the summary and, never averaged in, among its errors).

The run directory holds ``run.json`` (what was run, with its protocol when one was named, and the
environment's versions: :func:`openrlhf_act.envs.registry.env_versions`),
``episodes.jsonl`` (one record per finished episode with its whole transcript, appended and fsynced as
it finishes), ``summary.json`` and ``summary.md``. Running again into the same directory skips finished
episodes; an episode whose environment crashed is retried (``retries``) on a fresh worker, then recorded
as an error.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing import connection
from pathlib import Path
from typing import Any

from openrlhf_act import __version__
from openrlhf_act.actions import read_action
from openrlhf_act.envs.base import EnvStep, EnvTask, normalized_score
from openrlhf_act.envs.pool import START, STEP, EnvWorker, Started, WorkerFailed, WorkerPool
from openrlhf_act.envs.registry import env_versions, episode_key, preflight
from openrlhf_act.errors import UsageError
from openrlhf_act.eval.policies import Policy, stable_seed
from openrlhf_act.eval.summary import OVER_BUDGET, summarize_episodes, summary_markdown, write_summary
from openrlhf_act.files import RecordLog, open_run_dir, read_jsonl
from openrlhf_act.prompt_budget import PromptBudget, agent_prompt_fits
from openrlhf_act.prompts import DEFAULT_MAX_ADMISSIBLE_IN_PROMPT, NO_ACTION_FEEDBACK, agent_messages
from openrlhf_act.sampling import SampleRequest
from openrlhf_act.schema import State
from openrlhf_act.states import StateConfig, make_state

logger = logging.getLogger(__name__)

EPISODES_FILE = "episodes.jsonl"
NO_ACTION = "[no action]"
OK = "ok"
FINAL = (OK, OVER_BUDGET)  # outcomes a resumed run keeps (an "error" is played again)


@dataclass
class EvalEpisode:
    """One episode an evaluation run plays (or is about to): its progress and transcript."""

    task: EnvTask
    key: str
    attempt: int = 1
    begun: bool = False
    description: str = ""
    observation: str = ""
    admissible: tuple[str, ...] | None = None
    expert: str | None = None
    max_steps: int = 0
    score_scale: float = 1.0
    score: float = 0.0
    won: bool = False
    env_done: bool = False
    invalid: int = 0
    unparseable: int = 0
    turns: list[tuple[str, str]] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    prompt: str = ""
    pending: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass
class Slot:
    worker: EnvWorker
    episode: EvalEpisode | None = None

    @property
    def awaits_policy(self) -> bool:
        return self.episode is not None and self.episode.begun and self.worker.pending is None


@dataclass
class RunStats:
    """Counters of one invocation (the benchmark reads ``policy_calls`` and ``env_steps``)."""

    policy_calls: int = 0
    env_steps: int = 0
    episodes: int = 0
    errors: int = 0
    retries: int = 0
    worker_restarts: int = 0
    over_budget: int = 0
    seconds: float = 0.0
    # The options the environment workers started with: the run's plus the pool's defaults (ScienceWorld's GC).
    env_worker_options: dict[str, Any] = field(default_factory=dict)


class EpisodeRunner:
    """Plays ``tasks`` with ``policy`` in ``workers`` environment processes; see the module docstring."""

    def __init__(
        self,
        env_name: str,
        tasks: Sequence[EnvTask],
        policy: Policy,
        out_dir: str | Path,
        *,
        workers: int = 2,
        env_options: dict[str, Any] | None = None,
        max_steps: int | Mapping[str, int] | None = None,
        state_config: StateConfig | None = None,
        step_timeout: float = 300.0,
        start_timeout: float | None = None,
        retries: int = 1,
        seed: int = 0,
        progress: bool = True,
        pool: WorkerPool | None = None,
        max_prompt_tokens: int | None = None,
        tokenizer: str | None = None,
        max_admissible: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT,
        protocol: dict[str, Any] | None = None,
    ):
        """``pool``: play in these already-running workers (``workers`` and, unless given,
        ``env_options`` are then the pool's) and leave them running; by default the run starts its
        own workers and closes them at the end. ``max_prompt_tokens``: fit every prompt to this
        budget, counting with ``tokenizer`` (loaded now) or the estimate, as the data's rows are.
        ``state_config`` and ``max_admissible``: what a prompt shows, as the data's
        (``--window`` ... ``--max-admissible-in-prompt``). ``max_steps``: one limit, or one per task name
        (a protocol's, e.g. ETO's ScienceWorld limits); None: each environment's own. ``protocol``: what
        the run records of its protocol (:meth:`openrlhf_act.eval.protocols.Protocol.record`)."""
        if pool is not None:
            env_options = pool.options if env_options is None else env_options
            if (pool.env_name, pool.options) != (env_name, dict(env_options)):
                raise UsageError(
                    f"the environment pool runs {pool.env_name} with {pool.options}, "
                    f"not {env_name} with {dict(env_options)}"
                )
            workers = len(pool.workers)
        if workers < 1:
            raise UsageError(f"workers must be >= 1, got {workers}")
        limits = max_steps.values() if isinstance(max_steps, Mapping) else [max_steps]
        if any(limit is not None and limit < 1 for limit in limits):
            raise UsageError(f"max steps must be >= 1, got {max_steps}")
        if isinstance(max_steps, Mapping):
            missing = sorted({t.name for t in tasks} - set(max_steps))
            if missing:
                raise UsageError(f"no step limit for task(s) {', '.join(missing)}")
        if tokenizer and max_prompt_tokens is None:
            raise UsageError("--tokenizer counts tokens for a prompt budget: pass --max-prompt-tokens too")
        if max_prompt_tokens is not None and max_prompt_tokens <= 0:
            raise UsageError(f"--max-prompt-tokens must be positive, got {max_prompt_tokens}")
        self.env_name = env_name
        self.tasks = list(tasks)
        self.policy = policy
        self.out_dir = Path(out_dir)
        self.workers = workers
        self.env_options = dict(env_options or {})
        self.max_steps = dict(max_steps) if isinstance(max_steps, Mapping) else max_steps
        self.protocol = protocol
        self.state_config = state_config or StateConfig()
        self.max_admissible = max_admissible
        self.max_prompt_tokens = max_prompt_tokens
        self.tokenizer = tokenizer or None
        self.budget: PromptBudget | None = None
        if max_prompt_tokens is not None:
            self.budget = PromptBudget.load(
                max_prompt_tokens,
                self.tokenizer,
                chars_per_token=self.state_config.chars_per_token,
                max_admissible=max_admissible,
            )
        self.step_timeout = step_timeout
        # An episode start may include a JVM boot and a game compile on a busy machine.
        self.start_timeout = start_timeout or max(step_timeout, 300.0)
        self.retries = retries
        self.seed = seed
        self.progress = progress
        self.pool = pool
        self.stats = RunStats()
        self.slots: list[Slot] = []
        # Finished episodes' records, written (one fsync) once the freed workers have their next episode: the
        # write then overlaps the simulators' world build instead of holding every worker up.
        self._unwritten: list[dict[str, Any]] = []

    # ---- run directory ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "kind": "episodes",
            "env": self.env_name,
            "policy": self.policy.describe(),
            "env_options": self.env_options,
            "protocol": self.protocol,
            "max_steps": self.max_steps,
            "state": asdict(self.state_config),
            "max_admissible_in_prompt": self.max_admissible,
            "max_prompt_tokens": self.max_prompt_tokens,
            "tokenizer": self.tokenizer,
            "seed": self.seed,
            "version": __version__,
            "env_versions": env_versions(self.env_name),
        }

    def _check_config(self) -> dict[str, Any]:
        config = self.config()
        open_run_dir(self.out_dir, config)
        return config

    # ---- main loop ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Play every unfinished episode, then write and return the summary."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        config = self._check_config()
        records_path = self.out_dir / EPISODES_FILE
        finished = {r["episode"] for r in read_jsonl(records_path, log=True) if r.get("status") in FINAL}
        keys = [episode_key(t) for t in self.tasks]
        todo = [EvalEpisode(t, k) for t, k in zip(self.tasks, keys) if k not in finished]
        if len(todo) < len(keys):
            logger.info("resuming: %d of %d episodes already finished", len(keys) - len(todo), len(keys))
        if todo:
            preflight(self.env_name, self.env_options)
        start = time.monotonic()
        with RecordLog(records_path) as log:
            if todo:
                self._play(todo, log, done_before=len(keys) - len(todo), total=len(keys))
        self.stats.seconds = time.monotonic() - start
        records = list(read_jsonl(records_path, log=True))
        summary = summarize_episodes(records, config=config, keys=keys)
        summary["last_invocation"] = asdict(self.stats)
        if self.budget is not None:
            summary["last_invocation"]["prompt_tokens"] = self.budget.report()
        write_summary(self.out_dir, summary, summary_markdown(summary))
        return summary

    def _play(self, todo: list[EvalEpisode], log: RecordLog, *, done_before: int, total: int) -> None:
        from tqdm import tqdm

        pool = self.pool or WorkerPool(self.env_name, self.env_options, min(self.workers, len(todo)))
        self.stats.env_worker_options = pool.worker_options
        self.slots = [Slot(worker) for worker in pool.workers]
        queue = deque(todo)
        bar = tqdm(total=total, initial=done_before, desc=f"{self.env_name} episodes", disable=not self.progress)
        self._bar = bar
        try:
            while queue or any(s.episode is not None for s in self.slots):
                self._gather(queue, log)
                ready = [s for s in self.slots if s.awaits_policy]
                if ready:
                    self._act(ready, queue, log)
        finally:
            self._write(log)
            bar.close()
            if pool is self.pool:
                pool.settle()
            else:
                pool.close()

    def _fill(self, queue: deque[EvalEpisode], log: RecordLog) -> None:
        """Start the next queued episode on every free worker, the moment it is free."""
        for slot in self.slots:
            if slot.episode is None and queue:
                slot.episode = episode = queue.popleft()
                try:
                    slot.worker.send(START, episode.task, self.start_timeout)
                except WorkerFailed as exc:
                    self._failed(slot, str(exc), queue, log)

    def _gather(self, queue: deque[EvalEpisode], log: RecordLog) -> None:
        """Collect answers (starting queued episodes on freed workers at once) until some episode
        awaits the policy. It is held back for the other workers' pending steps, which come back
        in milliseconds, so that they share one batched policy call; not for pending starts (a
        start can take seconds), except before the run's first call, which serves every episode."""
        while True:
            now = time.monotonic()
            for slot in self.slots:
                if slot.worker.pending is None:
                    continue
                if slot.worker.has_answer():
                    self._receive(slot, queue, log)
                elif slot.worker.overdue(now):
                    kind = slot.worker.pending
                    limit = self.start_timeout if kind == START else self.step_timeout
                    self._failed(slot, f"no answer to {kind} within {limit:.0f} s", queue, log, hung=True)
            self._fill(queue, log)
            self._write(log)
            busy = [s for s in self.slots if s.worker.pending is not None]
            if any(s.awaits_policy for s in self.slots) and self.stats.policy_calls:
                busy = [s for s in busy if s.worker.pending == STEP]
            if not busy:
                return
            timeout = max(0.0, min(s.worker.deadline for s in busy) - time.monotonic())
            connection.wait([w for s in busy for w in s.worker.waitables()], timeout=timeout + 0.01)

    def _receive(self, slot: Slot, queue: deque[EvalEpisode], log: RecordLog) -> None:
        episode = slot.episode
        assert episode is not None
        try:
            answer = slot.worker.receive()
        except WorkerFailed as exc:
            self._failed(slot, str(exc), queue, log)
            return
        if isinstance(answer, Started):
            episode.begun = True
            episode.description = answer.task_description
            episode.max_steps = self._step_limit(episode.task) or answer.max_steps
            episode.score_scale = answer.score_scale
            episode.started = time.monotonic()
            self._observe(episode, answer.first)
            if answer.first.done:
                self._finish(slot, log)
            return
        self.stats.env_steps += 1
        entry = episode.pending or {}
        episode.pending = None
        entry.update(
            observation=answer.observation,
            reward=answer.reward,
            score=answer.score,
            valid=answer.valid,
            done=answer.done,
        )
        episode.transcript.append(entry)
        episode.turns.append((episode.observation, entry["action"]))
        episode.invalid += not answer.valid
        self._observe(episode, answer)
        if answer.done or len(episode.transcript) >= episode.max_steps:
            episode.env_done = answer.done
            self._finish(slot, log)

    def _step_limit(self, task: EnvTask) -> int | None:
        return self.max_steps.get(task.name) if isinstance(self.max_steps, dict) else self.max_steps

    @staticmethod
    def _observe(episode: EvalEpisode, step: EnvStep) -> None:
        episode.observation = step.observation
        episode.admissible = step.admissible
        episode.expert = step.expert
        episode.score = step.score
        episode.won = step.won

    def _state(self, episode: EvalEpisode) -> State:
        return make_state(
            task_id=episode.task.task_id,
            env=episode.task.env,
            task=episode.description,
            turns=episode.turns,
            observation=episode.observation,
            step=len(episode.transcript),
            admissible=episode.admissible,
            config=self.state_config,
        )

    def _prompts(self, states: list[State]) -> list[tuple[list[dict[str, str]], int | None] | None]:
        """Each state's agent prompt and, with a budget, its token count: as the data renders it
        (fitted to the budget as the data's rows are); None where it cannot fit."""
        if self.budget is None:
            return [(agent_messages(state, max_admissible=self.max_admissible), None) for state in states]
        fits = agent_prompt_fits(self.budget, states)
        return [None if fit is None else (fit.messages, fit.tokens) for fit in fits]

    def _request(self, episode: EvalEpisode, messages: list[dict[str, str]]) -> SampleRequest:
        episode.prompt = messages[-1]["content"]
        key = f"{episode.key}#{len(episode.transcript)}"
        return SampleRequest(
            key=key,
            messages=messages,
            n=1,
            seed=stable_seed(self.seed, key),
            admissible=episode.admissible,
            expert=episode.expert or "",
        )

    def _act(self, ready: list[Slot], queue: deque[EvalEpisode], log: RecordLog) -> None:
        prompts = self._prompts([self._state(s.episode) for s in ready])  # type: ignore[arg-type]
        asked: list[Slot] = []
        requests: list[SampleRequest] = []
        tokens: list[int | None] = []
        for slot, prompt in zip(ready, prompts):
            if prompt is None:
                self._over_budget(slot, log)
                continue
            asked.append(slot)
            requests.append(self._request(slot.episode, prompt[0]))  # type: ignore[arg-type]
            tokens.append(prompt[1])
        if not requests:
            return
        responses = self.policy.respond(requests)
        self.stats.policy_calls += 1
        for slot, completion, prompt_tokens in zip(asked, responses, tokens):
            episode = slot.episode
            assert episode is not None
            action, reason = read_action(
                completion.response, admissible=episode.admissible, truncated=completion.truncated
            )
            entry = {
                "step": len(episode.transcript),
                "prompt": episode.prompt,
                **({} if prompt_tokens is None else {"prompt_tokens": prompt_tokens}),
                "response": completion.text,
                "finish_reason": completion.finish_reason,
                "action": action,
                "action_reason": reason,
                "expert": episode.expert,
            }
            if action is not None:
                episode.pending = entry
                try:
                    slot.worker.send(STEP, action, self.step_timeout)
                except WorkerFailed as exc:
                    self._failed(slot, str(exc), queue, log)
                continue
            episode.unparseable += 1
            entry.update(observation=NO_ACTION_FEEDBACK, reward=0.0, score=episode.score, valid=False, done=False)
            episode.transcript.append(entry)
            episode.turns.append((episode.observation, NO_ACTION))
            episode.observation = NO_ACTION_FEEDBACK
            if len(episode.transcript) >= episode.max_steps:
                self._finish(slot, log)

    # ---- outcomes -----------------------------------------------------------------------------
    def _record(self, episode: EvalEpisode, status: str, error: str | None = None) -> dict[str, Any]:
        task = episode.task
        normalized = normalized_score(episode.score, episode.score_scale) if status == OK else 0.0
        return {
            "episode": episode.key,
            "status": status,
            "error": error,
            "env": task.env,
            "split": task.split,
            "task": task.name,
            "task_id": task.task_id,
            "variation": task.variation,
            "game": task.game_file,
            "attempt": episode.attempt,
            "task_description": episode.description,
            "score": episode.score,
            "normalized_score": normalized,
            "won": bool(episode.won) and status == OK,
            "env_done": episode.env_done,
            "steps": len(episode.transcript),
            "invalid_actions": episode.invalid,
            "unparseable": episode.unparseable,
            "seconds": round(time.monotonic() - episode.started, 3),
            "transcript": episode.transcript,
        }

    def _finish(self, slot: Slot, log: RecordLog, status: str = OK, error: str | None = None) -> None:
        episode = slot.episode
        assert episode is not None
        slot.episode = None
        self._unwritten.append(self._record(episode, status, error))
        self.stats.episodes += 1
        self._bar.update(1)

    def _write(self, log: RecordLog) -> None:
        if self._unwritten:
            log.extend(self._unwritten)
            self._unwritten.clear()

    def _over_budget(self, slot: Slot, log: RecordLog) -> None:
        """The step's prompt cannot fit the budget even with no history and the observation clipped."""
        episode = slot.episode
        assert episode is not None and self.budget is not None
        step = len(episode.transcript)
        logger.warning("episode %s ends at step %d: its prompt cannot fit the budget", episode.key, step)
        error = (
            f"step {step}: the prompt cannot fit --max-prompt-tokens {self.max_prompt_tokens} "
            f"({self.budget.counter.name}) even with no history and the observation clipped"
        )
        self.stats.over_budget += 1
        self._finish(slot, log, OVER_BUDGET, error)

    def _failed(self, slot: Slot, error: str, queue: deque[EvalEpisode], log: RecordLog, *, hung: bool = False) -> None:
        """The episode's environment failed: replace a dead or hung worker, retry or record the error."""
        episode = slot.episode
        slot.episode = None
        if hung or slot.worker.broken or not slot.worker.process.is_alive():
            slot.worker.restart()
            self.stats.worker_restarts += 1
        if episode is None:
            return
        logger.warning("episode %s (attempt %d) failed: %s", episode.key, episode.attempt, error)
        if episode.attempt <= self.retries:
            self.stats.retries += 1
            queue.appendleft(EvalEpisode(episode.task, episode.key, attempt=episode.attempt + 1))
            return
        log.append(self._record(episode, "error", error))
        self.stats.errors += 1
        self._bar.update(1)
