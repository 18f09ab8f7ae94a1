"""The routing reward: ACT rows get our rewards, every other row gets the user's reward.

The first tests call the router directly. The others run it the way OpenRLHF does: its real
``SingleTurnAgentExecutor`` loads ``routing_reward.py`` by absolute path and scores each generated
sample in ``execute``; only the generation is scripted (a tiny engine that returns fixed tokens).
Each Ray rollout actor reads the reward settings from its environment once, so those runs happen in
a fresh Python process per test module, with ``routing.reset()`` between configurations.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from openrlhf_act.rewards import routing
from openrlhf_act.rewards.base import STATS
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.schema import JudgmentLabel, NextActionLabel, encode_label
from tests.conftest import requires_openrlhf

ROOT = Path(__file__).resolve().parent.parent
ROUTING_ENTRY = ROOT / "openrlhf_act" / "integrations" / "openrlhf" / "routing_reward.py"
USER_KEYS = "exact,has_answer"
RESULT_MARK = "ROUTING_RESULTS "
PROMPT = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"

# A user's own reward file, as a math GRPO run would have it: exact match on the last \boxed{}.
MATH_REWARD = r"""
import json
import re


def _answer(label):
    try:
        decoded = json.loads(label)
    except (TypeError, ValueError):
        return str(label).strip()
    return str(decoded["answer"]).strip() if isinstance(decoded, dict) else str(decoded).strip()


def reward_func(queries, prompts, labels):
    boxed = re.findall(r"\\boxed\{([^}]*)\}", queries[0])
    exact = float(bool(boxed) and boxed[-1].strip() == _answer(labels[0]))
    return {"rewards": exact, "scores": exact, "extra_logs": {"exact": exact, "has_answer": float(bool(boxed))}}
"""

FAILING_REWARD = """
def reward_func(queries, prompts, labels):
    raise RuntimeError("the user's reward is broken")
"""


def judgment_label(answer: int) -> str:
    candidates = ("open door", "go north") if answer == 1 else ("go north", "open door")
    return encode_label(JudgmentLabel(answer, candidates, "open door", "t#0", "t", "scienceworld", 0))


def next_action_label() -> str:
    return encode_label(NextActionLabel("open door", ("open door", "go north"), "t", "scienceworld", 0))


def user_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


ACT_MESSAGES = [
    {"role": "system", "content": "You judge actions."},
    {"role": "user", "content": "Which action is better?\nAction 1: go north\nAction 2: open door"},
]

# (name, prompt row in our data contract, scripted response)
CASES = {
    "act_right": (
        {"prompt": ACT_MESSAGES, "label": judgment_label(2)},
        "<think>the door</think><answer>Action 2</answer>",
    ),
    "act_wrong": ({"prompt": ACT_MESSAGES, "label": judgment_label(2)}, "<answer>Action 1</answer>"),
    "act_malformed": ({"prompt": ACT_MESSAGES, "label": judgment_label(2)}, "both look fine"),
    "next_action": ({"prompt": user_messages("Next action?"), "label": next_action_label()}, "Action: open door"),
    "user_right": ({"prompt": user_messages("What is 2 + 3?"), "label": "5"}, "2 + 3 = \\boxed{5}"),
    "user_wrong": ({"prompt": user_messages("What is 2 + 3?"), "label": "5"}, "\\boxed{6}"),
    # A user's multiple-choice label that looks like ours but names no kind: it stays with the user.
    "user_lookalike": (
        {"prompt": user_messages("Pick one: a or b"), "label": json.dumps({"answer": 2, "candidates": ["a", "b"]})},
        "\\boxed{2}",
    ),
}


@pytest.fixture
def user_rewards(tmp_path):
    math = tmp_path / "math_reward.py"
    math.write_text(MATH_REWARD)
    failing = tmp_path / "failing_reward.py"
    failing.write_text(FAILING_REWARD)
    return SimpleNamespace(math=str(math), failing=str(failing))


# ---------------------------------------------------------------------------------------------
# The router on its own


def test_route_kind_needs_an_explicit_kind_of_ours():
    assert routing.route_kind(judgment_label(1)) == "act_judgment"
    assert routing.route_kind(next_action_label().encode()) == "next_action"
    assert routing.route_kind({"kind": "act_judgment", "answer": 1}) == "act_judgment"
    assert routing.route_kind(json.dumps({"answer": 1, "candidates": ["a", "b"]})) is None
    assert routing.route_kind(json.dumps({"kind": "math"})) is None
    assert routing.route_kind("5") is None
    assert routing.route_kind("{not json") is None
    assert routing.route_kind(None) is None


def test_router_sends_each_row_to_its_reward(user_rewards):
    router = routing.Router(user_rewards.math, ("user_exact", "user_has_answer"))
    names = list(CASES)
    results = router.score(
        [PROMPT + CASES[n][1] + "<|im_end|>" for n in names],
        [PROMPT] * len(names),
        [CASES[n][0]["label"] for n in names],
        RewardConfig(),
    )
    got = dict(zip(names, results))
    assert [got[n].reward for n in names] == [1.0, 0.0, -0.5, 1.0, 1.0, 0.0, 1.0]
    assert got["act_right"].logs["route_act"] == 1.0 and got["act_right"].logs["act_accuracy"] == 1.0
    assert got["next_action"].logs["route_next_action"] == 1.0 and got["next_action"].logs["na_accuracy"] == 1.0
    assert got["user_right"].logs["user_exact"] == 1.0 and got["user_right"].logs["user_reward"] == 1.0
    assert got["user_lookalike"].logs["route_user"] == 1.0
    assert got["act_right"].logs["user_exact"] == 0.0
    assert {tuple(r.logs) for r in results} == {(*routing.BASE_LOG_KEYS, "user_exact", "user_has_answer")}


def test_a_failing_user_reward_gives_zero_and_a_counter(user_rewards, caplog):
    from openrlhf_act.repeated_logs import REPEATS

    REPEATS.flush()  # a new period: this reason's first record is logged
    router = routing.Router(user_rewards.failing, ())
    before = STATS.snapshot().get("routing.user_reward_error", 0)
    (result,) = router.score([PROMPT + "\\boxed{5}"], [PROMPT], ["5"], RewardConfig(label_error=-3.0))
    assert (result.reward, result.score) == (0.0, 0.0)
    assert result.logs["user_error"] == 1.0 and result.logs["route_user"] == 1.0
    assert STATS.snapshot()["routing.user_reward_error"] == before + 1
    assert "broken" in caplog.text


@pytest.mark.parametrize(
    "target, returns",
    [
        (None, None),  # non-ACT rows but no user reward configured
        ("/nonexistent/reward.py", None),
        ("user", "{'rewards': float('nan')}"),
        ("user", "{'scores': 1.0}"),  # no rewards at all
    ],
)
def test_unusable_user_rewards_never_raise(tmp_path, target, returns):
    if target == "user":
        path = tmp_path / "odd_reward.py"
        path.write_text(f"def reward_func(queries, prompts, labels):\n    return {returns}\n")
        target = str(path)
    router = routing.Router(target, ())
    for _ in range(2):  # a failed load is remembered, not retried per sample
        (result,) = router.score([PROMPT + "x"], [PROMPT], ["5"], RewardConfig())
        assert result.reward == 0.0 and result.logs["user_error"] == 1.0


def test_reset_rereads_the_user_reward_from_the_environment(user_rewards, monkeypatch):
    config = RewardConfig()
    query = [PROMPT + "\\boxed{5}<|im_end|>"]
    monkeypatch.setenv(routing.DEFAULT_ENV, user_rewards.failing)
    routing.reset()
    try:
        assert routing.score_routed(query, [PROMPT], ["5"], config)[0].logs["user_error"] == 1.0
        monkeypatch.setenv(routing.DEFAULT_ENV, user_rewards.math)
        assert routing.score_routed(query, [PROMPT], ["5"], config)[0].logs["user_error"] == 1.0  # still cached
        routing.reset()
        assert routing.score_routed(query, [PROMPT], ["5"], config)[0].reward == 1.0
    finally:
        routing.reset()


# ---------------------------------------------------------------------------------------------
# Through OpenRLHF's SingleTurnAgentExecutor, in a fresh process


class ScriptedEngine:
    """Stands in for the vLLM engine (not for OpenRLHF): returns a fixed response's token ids."""

    def __init__(self, tokenizer, response: str):
        self.token_ids = tokenizer(response + "<|im_end|>", add_special_tokens=False)["input_ids"]

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        output = SimpleNamespace(token_ids=self.token_ids, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])


def executor_main() -> None:
    """Subprocess body: one SingleTurnAgentExecutor per configuration (a new rollout actor), every case
    through ``execute``; prints the outcomes as JSON."""
    from openrlhf_act.devtools.openrlhf_cpu import enable_flash_attn_stub

    enable_flash_attn_stub()
    from openrlhf.datasets.prompts_dataset import preprocess_data
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from transformers import AutoTokenizer

    request = json.loads(sys.stdin.read())
    tokenizer = AutoTokenizer.from_pretrained(request["model"])
    outcomes = {}
    for scenario in request["scenarios"]:
        for name, value in scenario["env"].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        routing.reset()
        executor = SingleTurnAgentExecutor([str(ROUTING_ENTRY)])  # as RolloutRayActor passes --reward.remote_url
        for case in scenario["cases"]:
            row, response = CASES[case]
            prompt, label = preprocess_data(row, None, "prompt", "label", tokenizer.apply_chat_template)
            params = SimpleNamespace(max_tokens=64, logprobs=None)  # the two fields execute reads
            out = asyncio.run(
                executor.execute(prompt, label, params, 1024, tokenizer, ScriptedEngine(tokenizer, response))
            )
            outcomes[f"{scenario['name']}/{case}"] = {
                "reward": out["reward"],
                "scores": out["scores"],
                "extra_logs": {k: float(v) for k, v in out["extra_logs"].items()},
            }
    outcomes["stats"] = STATS.snapshot()
    print(RESULT_MARK + json.dumps(outcomes))


def free_loopback_port_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def http_user_reward():
    """The user's math reward behind OpenRLHF's remote-RM protocol, on a free loopback port."""
    from aiohttp import web

    requests: list[dict] = []

    async def score(request: web.Request) -> web.Response:
        body = await request.json()
        requests.append(body)
        namespace: dict = {}
        exec(MATH_REWARD, namespace)
        results = [
            namespace["reward_func"]([q], [p], [lab])
            for q, p, lab in zip(body["query"], body["prompts"], body["labels"])
        ]
        return web.json_response(
            {
                "rewards": [r["rewards"] for r in results],
                "scores": [r["scores"] for r in results],
                "extra_logs": {k: [r["extra_logs"][k] for r in results] for k in ("exact", "has_answer")},
            }
        )

    app = web.Application()
    app.router.add_post("/reward", score)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    sock = free_loopback_port_socket()
    loop.run_until_complete(web.SockSite(runner, sock).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}/reward", requests=requests)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def executor_outcomes(tiny_model, http_user_reward, tmp_path_factory):
    folder = tmp_path_factory.mktemp("user-rewards")
    (folder / "math_reward.py").write_text(MATH_REWARD)
    (folder / "failing_reward.py").write_text(FAILING_REWARD)
    everything = list(CASES)
    scenarios = [
        {"name": "file", "env": {routing.DEFAULT_ENV: str(folder / "math_reward.py")}, "cases": everything},
        {
            "name": "http",
            "env": {routing.DEFAULT_ENV: http_user_reward.url},
            "cases": ["user_right", "user_wrong", "act_right"],
        },
        {
            "name": "failing_binary",
            "env": {
                routing.DEFAULT_ENV: str(folder / "failing_reward.py"),
                "OPENRLHF_ACT_REWARD_PRESET": "binary",
                "OPENRLHF_ACT_REWARD_CONFIG": '{"correct": 2.0}',
            },
            "cases": ["user_right", "act_malformed", "act_right"],
        },
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENRLHF_ACT_")}
    env.update({routing.USER_KEYS_ENV: USER_KEYS, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    done = subprocess.run(
        [sys.executable, "-c", "from tests.test_routing import executor_main; executor_main()"],
        input=json.dumps({"model": tiny_model, "scenarios": scenarios}),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len(RESULT_MARK) :])


@requires_openrlhf
def test_executor_gives_act_rows_our_reward_and_user_rows_theirs(executor_outcomes):
    got = {case: executor_outcomes[f"file/{case}"] for case in CASES}
    assert {case: o["reward"] for case, o in got.items()} == {
        "act_right": 1.0,
        "act_wrong": 0.0,
        "act_malformed": -0.5,
        "next_action": 1.0,
        "user_right": 1.0,
        "user_wrong": 0.0,
        "user_lookalike": 1.0,
    }
    assert got["act_right"]["scores"] == 1.0 and got["act_malformed"]["scores"] == 0.0
    for case in ("act_right", "act_wrong", "act_malformed"):
        assert got[case]["extra_logs"]["route_act"] == 1.0 and got[case]["extra_logs"]["route_user"] == 0.0
    assert got["act_right"]["extra_logs"]["act_correct_gold_second"] == 1.0
    assert got["act_malformed"]["extra_logs"]["act_malformed"] == 1.0
    assert got["next_action"]["extra_logs"]["route_next_action"] == 1.0
    for case in ("user_right", "user_wrong", "user_lookalike"):
        assert got[case]["extra_logs"]["route_user"] == 1.0 and got[case]["extra_logs"]["route_act"] == 0.0
    assert got["user_right"]["extra_logs"]["user_exact"] == 1.0
    assert (
        got["user_wrong"]["extra_logs"]["user_has_answer"] == 1.0
        and got["user_wrong"]["extra_logs"]["user_exact"] == 0.0
    )


@requires_openrlhf
def test_executor_every_sample_has_the_same_log_keys(executor_outcomes):
    expected = set(routing.log_keys({routing.USER_KEYS_ENV: USER_KEYS}))
    samples = [o for key, o in executor_outcomes.items() if key != "stats"]
    assert len(samples) == len(CASES) + 6
    assert all(set(o["extra_logs"]) == expected for o in samples)


@requires_openrlhf
def test_executor_with_an_http_user_reward(executor_outcomes, http_user_reward):
    assert executor_outcomes["http/user_right"]["reward"] == 1.0
    assert executor_outcomes["http/user_right"]["extra_logs"]["user_exact"] == 1.0
    assert executor_outcomes["http/user_wrong"]["reward"] == 0.0
    assert executor_outcomes["http/act_right"]["extra_logs"]["route_act"] == 1.0
    bodies = http_user_reward.requests
    assert len(bodies) == 2, "ACT rows must not reach the user's server"
    assert all(len(b["query"]) == len(b["prompts"]) == len(b["labels"]) == 1 for b in bodies)
    assert {b["labels"][0] for b in bodies} == {"5"}


@requires_openrlhf
def test_executor_failing_user_reward_and_reward_settings_from_env(executor_outcomes):
    failed = executor_outcomes["failing_binary/user_right"]
    assert (failed["reward"], failed["scores"]) == (0.0, 0.0)
    assert failed["extra_logs"]["user_error"] == 1.0
    assert executor_outcomes["stats"]["routing.user_reward_error"] == 1
    # OPENRLHF_ACT_REWARD_PRESET=binary and OPENRLHF_ACT_REWARD_CONFIG reached the reward: malformed
    # costs 0 instead of -0.5, a right verdict earns the overridden 2.0, and scores stay 0/1.
    assert executor_outcomes["failing_binary/act_malformed"]["reward"] == 0.0
    assert executor_outcomes["failing_binary/act_right"]["reward"] == 2.0
    assert executor_outcomes["failing_binary/act_right"]["scores"] == 1.0
