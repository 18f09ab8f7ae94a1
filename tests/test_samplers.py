"""Alternative samplers: the admissible baseline, vLLM offline, an OpenAI-compatible server, transformers.

Model-backed tests use the session's tiny random model: its completions are noise, which is all these
tests need (counts, order, seeding, templates, process lifetime).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_tools.samplers import SAMPLERS, SamplerError, make_sampler
from data_tools.samplers.admissible import AdmissibleSampler
from data_tools.samplers.base import render_prompt
from openrlhf_act.actions import normalize_action, parse_action
from openrlhf_act.errors import UsageError
from openrlhf_act.prompts import action_response, agent_messages
from openrlhf_act.sampling import SampleRequest
from openrlhf_act.schema import State
from tests.conftest import requires_vllm

KV_CACHE_BYTES = 256 * 2**20
MAX_MODEL_LEN = 1024
ADMISSIBLE = (
    "open door to kitchen",
    "go to hallway",
    "look around",
    "pick up thermometer",
    "focus on blue jay",
    "move egg to red box",
    "inventory",
    "wait",
)


def make_request(
    key: str = "find-plant/v0#3",
    *,
    seed: int = 0,
    n: int = 1,
    expert: str = "open door to kitchen",
    admissible: tuple[str, ...] | None = ADMISSIBLE,
    observation: str = "This room is called the hallway. In it, you see: the agent, a picture.",
) -> SampleRequest:
    state = State(
        task_id=key.split("#")[0],
        env="scienceworld",
        task="Your task is to find a living thing. First, focus on the thing.",
        history=(("You are in the kitchen.", "go to hallway"),),
        observation=observation,
        expert_action=expert,
        step=int(key.split("#")[1]),
        admissible=admissible,
    )
    return SampleRequest(key, agent_messages(state), n, seed, admissible, expert)


def varied_requests(count: int, *, n: int = 1) -> list[SampleRequest]:
    return [
        make_request(f"task-{i}/v0#{i}", seed=1000 + i, n=n, observation=f"You see {i} apples and a door.")
        for i in range(count)
    ]


# --- registry and options --------------------------------------------------------------------------------


def test_registry_names():
    assert set(SAMPLERS) == {"vllm", "openai", "hf", "admissible"}


def test_unknown_sampler_is_a_usage_error():
    with pytest.raises(UsageError, match=r"unknown sampler 'vlm'.*vllm"):
        make_sampler("vlm")


def test_unknown_option_is_a_usage_error():
    with pytest.raises(UsageError, match=r"does not take option.*temprature"):
        make_sampler("admissible", temprature=0.5)


def test_none_options_mean_default():
    sampler = make_sampler("admissible", model=None, temperature=None)
    assert sampler.options.temperature == 1.0


@pytest.mark.parametrize("bad", [{"temperature": -1.0}, {"top_p": 0.0}, {"max_tokens": 0}, {"batch_size": 0}])
def test_bad_option_values(bad):
    with pytest.raises(UsageError):
        make_sampler("admissible", **bad)


@pytest.mark.parametrize("name", ["vllm", "hf"])
def test_model_backed_samplers_need_an_existing_model(name, tmp_path):
    with pytest.raises(UsageError, match="needs a model"):
        make_sampler(name)
    with pytest.raises(UsageError, match="does not exist"):
        make_sampler(name, model=str(tmp_path / "missing-model"))


def test_openai_needs_model_and_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UsageError, match="served model name"):
        make_sampler("openai", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(UsageError, match="base_url"):
        make_sampler("openai", model="policy")


def test_import_stays_light():
    code = (
        "import sys, data_tools.samplers; "
        "heavy = [m for m in ('torch', 'vllm', 'transformers', 'openai') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_fingerprint_tracks_sampling_options(tiny_model):
    base = make_sampler("hf", model=tiny_model).fingerprint()
    assert base == make_sampler("hf", model=tiny_model).fingerprint()
    assert base["model_identity"]
    for change in ({"temperature": 0.7}, {"max_tokens": 64}, {"chat_template_kwargs": {"enable_thinking": False}}):
        assert make_sampler("hf", model=tiny_model, **change).fingerprint() != base


# --- admissible -------------------------------------------------------------------------------------------


def test_admissible_is_deterministic_per_seed():
    sampler = AdmissibleSampler.from_options()
    requests = [make_request(seed=s, n=3) for s in range(20)]
    first = sampler.sample(requests)
    assert first == sampler.sample(requests)
    assert first[5] == sampler.sample([requests[5]])[0]  # independent of the rest of the batch
    assert len({tuple(r) for r in first}) > 1  # different seeds, different draws


def test_admissible_never_returns_the_expert_and_parses():
    admissible = (*ADMISSIBLE, " Open  door to KITCHEN. ")  # the expert again, in another spelling
    sampler = AdmissibleSampler.from_options()
    for seed in range(50):
        (completions,) = sampler.sample([make_request(seed=seed, n=4, admissible=admissible)])
        actions = [parse_action(c.text) for c in completions]
        assert {c.finish_reason for c in completions} == {"stop"}
        assert len(actions) == 4 and len(set(actions)) == 4
        assert all(a in admissible for a in actions)
        assert "open door to kitchen" not in {normalize_action(a) for a in actions}


def test_admissible_empty_without_candidates():
    sampler = AdmissibleSampler.from_options()
    no_list = make_request(admissible=None)
    only_expert = make_request(admissible=("open door to kitchen", "Open door to kitchen."))
    assert sampler.sample([no_list, only_expert]) == [[], []]


def test_admissible_gives_at_most_the_pool():
    sampler = AdmissibleSampler.from_options()
    (completions,) = sampler.sample([make_request(n=50)])
    assert sorted(parse_action(c.text) for c in completions) == sorted(ADMISSIBLE[1:])


@settings(max_examples=200, deadline=None)
@given(
    pool=st.lists(st.text(min_size=1, max_size=12), max_size=12),
    expert=st.text(min_size=1, max_size=12),
    n=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_admissible_property(pool, expert, n, seed):
    request = dataclasses.replace(make_request(seed=seed, n=n, expert=expert), admissible=tuple(pool))
    (completions,) = AdmissibleSampler.from_options().sample([request])
    assert len(completions) == min(n, len({normalize_action(p) for p in pool} - {"", normalize_action(expert)}))
    rendered = {action_response(p): p for p in pool}  # the agent's answer format, multi-line commands fenced
    for completion in completions:
        assert completion.text in rendered
        assert normalize_action(rendered[completion.text]) != normalize_action(expert)


def test_render_prompt_passes_template_kwargs_and_needs_a_template(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = "{{ messages[-1]['content'] }}{% if enable_thinking is false %} /no_think{% endif %}"
    messages = make_request().messages
    assert render_prompt(tokenizer, messages, {"enable_thinking": False}).endswith(" /no_think")
    assert not render_prompt(tokenizer, messages, None).endswith(" /no_think")
    tokenizer.chat_template = None
    with pytest.raises(UsageError, match="no chat template"):
        render_prompt(tokenizer, messages, None)


# --- transformers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_sampler(tiny_model):
    with make_sampler("hf", model=tiny_model, max_tokens=12, batch_size=4) as sampler:
        yield sampler


def test_hf_counts_and_order(hf_sampler):
    requests = [*varied_requests(3, n=2), make_request(seed=7, n=3), make_request(seed=8, n=1)]
    completions = hf_sampler.sample(requests)
    assert [len(c) for c in completions] == [2, 2, 2, 3, 1]
    assert all(isinstance(c.text, str) and c.finish_reason in ("stop", "length") for cs in completions for c in cs)


def test_hf_seeded(hf_sampler):
    requests = varied_requests(5, n=2)
    first = hf_sampler.sample(requests)
    assert first == hf_sampler.sample(requests)
    reseeded = [dataclasses.replace(r, seed=r.seed + 1) for r in requests]
    assert hf_sampler.sample(reseeded) != first


def test_hf_batches_of_one_match_single_requests(tiny_model):
    # With one request per batch the batch seed is the request's own: order mapping is checkable.
    with make_sampler("hf", model=tiny_model, max_tokens=8, batch_size=1) as sampler:
        requests = varied_requests(3, n=2)
        together = sampler.sample(requests)
        assert together == [sampler.sample([r])[0] for r in requests]


def test_hf_greedy_repeats(tiny_model):
    with make_sampler("hf", model=tiny_model, max_tokens=8, temperature=0.0) as sampler:
        (completions,) = sampler.sample([make_request(n=3)])
        assert len(completions) == 3 and len(set(completions)) == 1


def test_hf_renders_the_chat_template(hf_sampler):
    request = make_request()
    text = hf_sampler.render(request.messages)
    assert text.startswith("<|im_start|>system\n")
    assert request.messages[1]["content"] in text
    assert text.endswith("<|im_start|>assistant\n")


# --- vLLM offline engine ----------------------------------------------------------------------------------


def engine_processes() -> list:
    """vLLM names its engine-core and worker processes ``VLLM::...`` (psutil comes with vLLM)."""
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if p.name().startswith("VLLM")]


@pytest.fixture(scope="module")
def vllm_sampler(tiny_model):
    sampler = make_sampler("vllm", model=tiny_model, max_tokens=16, max_model_len=MAX_MODEL_LEN)
    yield sampler
    sampler.close()


@pytest.mark.slow
@requires_vllm
def test_vllm_cpu_defaults(vllm_sampler):
    args = vllm_sampler.engine_args()
    assert args["dtype"] == "float32" and args["enforce_eager"] is True
    assert args["kv_cache_memory_bytes"] == KV_CACHE_BYTES and args["enable_prefix_caching"] is True
    assert args["enable_chunked_prefill"] is False


@pytest.mark.slow
@requires_vllm
def test_vllm_counts_order_and_seeds(vllm_sampler):
    requests = [*varied_requests(4, n=2), make_request(seed=7, n=3), make_request(seed=8, n=1)]
    completions = vllm_sampler.sample(requests)
    assert [len(c) for c in completions] == [2, 2, 2, 2, 3, 1]
    assert all(len(set(texts)) == len(texts) for texts in completions)  # n distinct samples, not n copies
    # Seeds are per request: each result is what that request gives alone, so results are in request order.
    assert [vllm_sampler.sample([r])[0] for r in requests] == completions
    assert vllm_sampler.sample(requests) == completions
    reseeded = [dataclasses.replace(r, seed=r.seed + 1) for r in requests]
    assert all(a != b for a, b in zip(vllm_sampler.sample(reseeded), completions))
    unbatched_options = vllm_sampler.options
    vllm_sampler.options = dataclasses.replace(unbatched_options, batch_size=4)
    try:
        assert vllm_sampler.sample(requests) == completions
    finally:
        vllm_sampler.options = unbatched_options


@pytest.mark.slow
@requires_vllm
def test_vllm_seeded_prompts_beyond_one_engine_step(vllm_sampler):
    # More distinct prompt tokens than one scheduler step takes: with chunked prefill, vllm-cpu's engine died.
    words = [a.split()[-1] for a in ADMISSIBLE]
    requests = [
        make_request(f"long-{i}/v0#1", seed=i, observation=" ".join(random.Random(i).choices(words, k=250)))
        for i in range(16)
    ]
    tokenizer = vllm_sampler.engine.get_tokenizer()
    prompt_tokens = sum(len(tokenizer(vllm_sampler.render(r.messages))["input_ids"]) for r in requests)
    assert prompt_tokens > vllm_sampler.engine.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
    assert [len(c) for c in vllm_sampler.sample(requests)] == [1] * len(requests)


@pytest.mark.slow
@requires_vllm
def test_vllm_renders_the_chat_template(vllm_sampler):
    request = make_request()
    text = vllm_sampler.render(request.messages)
    assert text.startswith("<|im_start|>system\n")
    assert request.messages[1]["content"] in text
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.slow
@requires_vllm
def test_vllm_skips_prompts_longer_than_the_context(vllm_sampler):
    too_long = make_request(observation="apple " * (2 * MAX_MODEL_LEN))
    completions = vllm_sampler.sample([make_request(seed=1), too_long, make_request(seed=2)])
    assert [len(c) for c in completions] == [1, 0, 1]


@pytest.mark.slow
@requires_vllm
def test_vllm_close_stops_the_engine_processes(vllm_sampler):
    vllm_sampler.sample([make_request()])
    processes = engine_processes()
    assert processes, "no vLLM engine process found while the engine runs"
    vllm_sampler.close()
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=60)
    assert not alive, f"still running after close(): {alive}"
    vllm_sampler.close()  # idempotent


# --- OpenAI-compatible endpoint ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(process: subprocess.Popen, url: str, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"vLLM server not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server by pid, then make sure none of the processes it started survives."""
    import psutil

    children = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(children, timeout=30)
    for child in alive:
        child.kill()


@contextlib.contextmanager
def serve_with_vllm(model: str, log: Path):
    """vLLM's OpenAI-compatible server for ``model`` (served as "tiny") on a free loopback port."""
    port = free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model, "--served-model-name", "tiny",
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager",
        "--kv-cache-memory-bytes", str(KV_CACHE_BYTES), "--max-model-len", str(MAX_MODEL_LEN),
        "--no-enable-chunked-prefill",  # seeded requests crash vllm-cpu's engine when a prefill is chunked
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        wait_until_healthy(process, f"http://127.0.0.1:{port}/health", log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def openai_server(tiny_model, tmp_path_factory):
    with serve_with_vllm(tiny_model, tmp_path_factory.mktemp("vllm-server") / "server.log") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def openai_sampler(openai_server):
    with make_sampler("openai", model="tiny", base_url=openai_server, max_tokens=16, max_retries=1) as sampler:
        yield sampler


@pytest.mark.slow
@requires_vllm
def test_openai_counts_order_and_seeds(openai_sampler):
    requests = [*varied_requests(4, n=2), make_request(seed=7, n=3), make_request(seed=8, n=1)]
    completions = openai_sampler.sample(requests)
    assert [len(c) for c in completions] == [2, 2, 2, 2, 3, 1]
    assert all(len(set(texts)) == len(texts) for texts in completions)
    assert [openai_sampler.sample([r])[0] for r in requests] == completions
    reseeded = [dataclasses.replace(r, seed=r.seed + 1) for r in requests]
    assert all(a != b for a, b in zip(openai_sampler.sample(reseeded), completions))


@pytest.mark.slow
@requires_vllm
def test_openai_rejected_prompts(openai_sampler):
    too_long = make_request(observation="apple " * (2 * MAX_MODEL_LEN))
    assert [len(c) for c in openai_sampler.sample([make_request(), too_long])] == [1, 0]
    with pytest.raises(SamplerError, match="rejected every request"):
        openai_sampler.sample([too_long])


@pytest.mark.slow
@requires_vllm
def test_openai_unknown_model_names_the_endpoint(openai_server):
    sampler = make_sampler("openai", model="no-such-model", base_url=openai_server, max_retries=0)
    with pytest.raises(SamplerError, match=re.escape(openai_server)):
        sampler.sample([make_request()])


def test_openai_unreachable_endpoint_fails_fast():
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    sampler = make_sampler("openai", model="policy", base_url=base_url, max_retries=2, timeout=5)
    start = time.monotonic()
    with pytest.raises(SamplerError, match=r"127\.0\.0\.1.*APIConnectionError"):
        sampler.sample(varied_requests(3))
    assert time.monotonic() - start < 20


def test_openai_silent_endpoint_times_out():
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        base_url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        sampler = make_sampler("openai", model="policy", base_url=base_url, max_retries=1, timeout=1.5)
        start = time.monotonic()
        with pytest.raises(SamplerError, match="APITimeoutError"):
            sampler.sample([make_request()])
        assert time.monotonic() - start < 15
