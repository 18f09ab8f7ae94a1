"""The HTTP reward service, called through OpenRLHF's own remote-RM client.

Every server runs as a real subprocess (``python -m openrlhf_act serve-reward``) and is stopped by its
pid in a ``finally``, its forked workers too.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from openrlhf_act.prompts import judgment_messages
from openrlhf_act.rewards.catalog import get_reward
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.schema import JudgmentLabel, State, encode_label
from openrlhf_act.server import BadRequest, parse_batch, token_matches
from tests.conftest import requires_openrlhf
from tests.serve_support import Server, alive, child_pids, free_port

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0
CONFIG = RewardConfig()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("plain"), "--port", "0", "--max-request-mb", "0.05")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


# ---------------------------------------------------------------- realistic samples


def _contrast_samples(tokenizer_dir: str) -> tuple[list[str], list[str], list[str], list[float]]:
    """Queries / prompts / labels as OpenRLHF builds them, with the reward the paper preset gives."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    state = State(
        task_id="find-living-thing-3",
        env="scienceworld",
        task="Your task is to find a(n) living thing. First, focus on the thing.",
        history=(("You are in the hallway.", "look around"),),
        observation="This room is called the greenhouse. In it, you see: a blue jay, a flower pot.",
        expert_action="focus on blue jay",
        step=1,
    )
    cases = [
        # (expert first?, response, expected reward)
        (True, "<think>The task asks to focus on a living thing.</think><answer>Action 1</answer>", CONFIG.correct),
        (False, "<think>The jay is alive.</think>\n<answer>Action 2</answer>", CONFIG.correct),
        (True, "<answer>Action 2</answer>", CONFIG.wrong),
        (False, "<answer>Action 1 or Action 2</answer>", CONFIG.malformed),
    ]
    queries, prompts, labels, expected = [], [], [], []
    for i, (expert_first, response, reward) in enumerate(cases):
        candidates = ("focus on blue jay", "open door to kitchen")
        if not expert_first:
            candidates = candidates[::-1]
        label = JudgmentLabel(
            answer=candidates.index("focus on blue jay") + 1,
            candidates=candidates,
            expert="focus on blue jay",
            pair_id=f"p{i}",
            task_id=state.task_id,
            env=state.env,
            step=state.step,
        )
        prompt = tokenizer.apply_chat_template(
            judgment_messages(state, candidates), tokenize=False, add_generation_prompt=True
        )
        queries.append(prompt + response + "<|im_end|>")
        prompts.append(prompt)
        labels.append(encode_label(label))
        expected.append(reward)
    # A response cut off by the length limit (no end marker) and a label that is not JSON.
    queries.append(prompts[0] + "<think>The task asks to focus on")
    prompts.append(prompts[0])
    labels.append(labels[0])
    expected.append(CONFIG.malformed)
    queries.append(queries[0])
    prompts.append(prompts[0])
    labels.append("{not json")
    expected.append(CONFIG.label_error)
    return queries, prompts, labels, expected


@pytest.fixture(scope="module")
def samples(tiny_model):
    return _contrast_samples(tiny_model)


def _openrlhf_fetch(urls: list[str], queries, prompts, labels) -> list[dict]:
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    return asyncio.run(SingleTurnAgentExecutor(urls)._fetch_rewards_via_http(queries, prompts, labels))


# ---------------------------------------------------------------- pure helpers (no server)


def test_parse_batch_accepts_openrlhf_shape_and_rejects_the_rest():
    body = json.dumps({"query": ["q1", "q2"], "prompts": ["p1", "p2"], "labels": ["l1", "l2"]}).encode()
    assert parse_batch(body) == (["q1", "q2"], ["p1", "p2"], ["l1", "l2"])
    assert parse_batch(b'{"query": ["q"]}') == (["q"], None, None)
    for bad, words in [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"prompts": []}', '"query"'),
        (b'{"query": "q"}', '"query"'),
        (b'{"query": []}', "empty batch"),
        (b'{"query": ["q"], "prompts": "p"}', '"prompts" must be a list'),
        (b'{"query": ["q"], "labels": ["a", "b"]}', '"labels" has 2 items but "query" has 1'),
    ]:
        with pytest.raises(BadRequest, match=words):
            parse_batch(bad)


def test_token_matches_bearer_and_basic_password():
    token = b"s3cret"
    basic = "Basic " + base64.b64encode(b"act:s3cret").decode()
    assert token_matches("Bearer s3cret", token)
    assert token_matches("bearer  s3cret ", token)
    assert token_matches(basic, token)
    no_password = "Basic " + base64.b64encode(b"s3cret").decode()
    for header in (None, "", "Bearer", "Bearer wrong", "Basic !!!", no_password, "Token s3cret"):
        assert not token_matches(header, token)


# ---------------------------------------------------------------- through OpenRLHF's client


@requires_openrlhf
def test_openrlhf_client_gets_our_rewards(plain_server, samples):
    queries, prompts, labels, expected = samples
    (answer,) = _openrlhf_fetch([plain_server.url], queries, prompts, labels)
    assert answer["rewards"] == expected
    local = get_reward("act_judgment").score(queries, prompts, labels, CONFIG)
    assert answer["rewards"] == [r.reward for r in local]
    assert answer["scores"] == [r.score for r in local] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    logs = answer["extra_logs"]
    assert set(logs) == set(get_reward("act_judgment").log_keys)
    assert all(len(values) == len(queries) for values in logs.values())
    assert logs["gold_first"] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert logs["pred_first"] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert logs["malformed"] == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    assert logs["truncated"] == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert logs["label_error"] == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


@requires_openrlhf
def test_openrlhf_shards_one_sample_per_url(plain_server, samples):
    """OpenRLHF splits a batch over its URLs (round robin); each shard is one request."""
    queries, prompts, labels, expected = samples
    urls = [plain_server.url, plain_server.url.replace("/get_reward", "/")]
    answers = _openrlhf_fetch(urls, queries, prompts, labels)
    assert len(answers) == 2
    assert answers[0]["rewards"] + answers[1]["rewards"] == expected


def test_health_reports_reward_keys_and_counters(plain_server, samples):
    queries, prompts, labels, _ = samples
    before = plain_server.get("/health")
    status, _ = plain_server.post(json.dumps({"query": queries, "prompts": prompts, "labels": labels}).encode())
    after = plain_server.get("/health")
    assert status == 200
    assert after["reward"] == "act_judgment" and after["version"]
    assert after["log_keys"] == list(get_reward("act_judgment").log_keys)
    assert after["counters"]["samples"] - before["counters"]["samples"] == len(queries)
    assert after["stats"].get("act_judgment.label_error", 0) >= 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'["a list"]',
        b'{"prompts": ["p"]}',
        b'{"query": "one string"}',
        b'{"query": ["q1", "q2"], "prompts": ["p1"]}',
        b'{"query": ["q1"], "labels": ["l1", "l2"]}',
        b'{"query": []}',
        b'{"query": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",  # nested deeper than the JSON parser goes
    ],
)
def test_malformed_requests_get_400_with_a_reason(plain_server, body):
    status, answer = plain_server.post(body)
    assert status == 400
    assert isinstance(answer["error"], str) and answer["error"]


def test_oversized_body_gets_413(plain_server, samples):
    queries, prompts, labels, _ = samples
    n = 40  # ~40 samples of ~1.5 KB exceed the 0.05 MB limit of this server
    body = json.dumps({"query": queries[:1] * n, "prompts": prompts[:1] * n, "labels": labels[:1] * n}).encode()
    assert len(body) > 0.05 * 2**20
    status, answer = plain_server.post(body)
    assert status == 413 and "--max-request-mb" in answer["error"]
    status, _ = plain_server.post(json.dumps({"query": queries[:1], "labels": labels[:1]}).encode())
    assert status == 200


# ---------------------------------------------------------------- token


@requires_openrlhf
def test_token_required_except_health(start_server, samples):
    queries, prompts, labels, expected = samples
    server = start_server("--port", "0", env={"OPENRLHF_ACT_SERVE_TOKEN": "tok-123"})
    body = json.dumps({"query": queries, "prompts": prompts, "labels": labels}).encode()
    assert server.post(body)[0] == 401
    assert server.post(body, headers={"Authorization": "Bearer nope"})[0] == 401
    status, answer = server.post(body, headers={"Authorization": "Bearer tok-123"})
    assert status == 200 and answer["rewards"] == expected
    assert server.get("/health")["status"] == "ok"
    # OpenRLHF sends no headers, but aiohttp turns URL credentials into Basic auth: the printed URL has
    # the credential form with a placeholder (never the secret), which works once the token is put in.
    assert "tok-123" not in server.out.read_text() and "act:<token>@" in server.url
    url = server.url.replace("<token>", "tok-123")
    (answer,) = _openrlhf_fetch([url], queries, prompts, labels)
    assert answer["rewards"] == expected


# ---------------------------------------------------------------- start-up errors


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (("--reward", "no_such_reward"), {}, "unknown reward"),
        ((), {"OPENRLHF_ACT_REWARD_CONFIG": '{"bogus": 1}'}, "unknown reward constant"),
        ((), {"OPENRLHF_ACT_REWARD_PRESET": "nope"}, "unknown reward preset"),
        (("--workers", "2", "--port", "0"), {}, "--port 0"),
    ],
)
def test_bad_settings_fail_at_start(start_server, args, env, words):
    server = start_server("--port", "0", *args, env=env, ready=False)
    assert server.proc.wait(timeout=START_TIMEOUT_S) == 2
    assert words in server.err.read_text()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_is_a_clear_error(start_server, plain_server, workers):
    server = start_server("--port", str(plain_server.port), "--workers", workers, ready=False)
    assert server.proc.wait(timeout=START_TIMEOUT_S) == 2
    assert "cannot listen" in server.err.read_text()


# ---------------------------------------------------------------- workers and shutdown


def _pids_answering(server: Server, tries: int = 60) -> set[int]:
    """Fresh connections are spread over the workers by the kernel; collect who answers."""
    pids = set()
    for _ in range(tries):
        pids.add(server.get("/health")["pid"])
        if len(pids) > 1:
            break
    return pids


@requires_openrlhf
def test_two_workers_share_the_port_and_stop_on_sigterm(start_server, samples):
    queries, prompts, labels, expected = samples
    server = start_server("--port", str(free_port()), "--workers", "2")
    workers = set(child_pids(server.proc.pid))
    assert len(workers) == 2
    assert _pids_answering(server) == workers
    (answer,) = _openrlhf_fetch([server.url], queries, prompts, labels)
    assert answer["rewards"] == expected
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in workers)


def test_crashed_worker_is_reported_and_replaced(start_server):
    server = start_server("--port", str(free_port()), "--workers", "2")
    victim, survivor = sorted(child_pids(server.proc.pid))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while "started worker" not in server.err.read_text():
        assert time.monotonic() < deadline, server.err.read_text()
        time.sleep(0.05)
    assert f"worker {victim} exited with signal 9; started worker" in server.err.read_text()
    workers = set(child_pids(server.proc.pid))
    assert len(workers) == 2 and survivor in workers and victim not in workers
    deadline = time.monotonic() + 15
    while _pids_answering(server, tries=20) != workers:  # the replacement listens on the shared port
        assert time.monotonic() < deadline
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 1  # a crash happened: the supervisor says so in its exit code


def test_sigterm_finishes_the_request_in_flight(start_server, samples):
    queries, prompts, labels, expected = samples
    server = start_server("--port", "0")
    body = json.dumps({"query": queries[:2], "prompts": prompts[:2], "labels": labels[:2]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("POST", "/get_reward")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:100])
        time.sleep(0.3)  # the handler is now waiting for the rest of the body
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:  # the listening socket closes: new connections are refused
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "server kept accepting connections after SIGTERM"
            time.sleep(0.05)
        conn.send(body[100:])
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["rewards"] == expected[:2]
    finally:
        conn.close()
    assert server.proc.wait(timeout=30) == 0
    assert "finishing 1 in-flight request(s)" in server.err.read_text()
