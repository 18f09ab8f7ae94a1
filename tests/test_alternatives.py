"""Alternatives are actions: what the real samplers return for the completions a policy really
produces, and which of them the alternatives filter keeps (``tests/completions.py`` lists them)."""

from __future__ import annotations

import pytest

from data_tools.alternatives import classify
from data_tools.samplers import make_sampler
from openrlhf_act.actions import Completion
from openrlhf_act.prompts import agent_messages
from openrlhf_act.sampling import SampleRequest
from tests.completions import ADMISSIBLE, CUT_OFF_REPLIES, EXPECTED, REPLIES, STATE
from tests.conftest import requires_vllm

MAX_TOKENS = 24


def _request(seed: int) -> SampleRequest:
    return SampleRequest(
        key="escape/v0#0", messages=agent_messages(STATE), n=64, seed=seed, admissible=ADMISSIBLE, expert="open door"
    )


def _reply_of(text: str) -> str:
    """The scripted reply a completion is (a cut-off reply continues with filler up to the limit)."""
    return next(r for r in REPLIES if text == r or (r in CUT_OFF_REPLIES and text.startswith(r)))


def sampled_once_each(sampler) -> dict[str, Completion]:
    """Every scripted reply as the sampler returned it, drawing seeds until each was seen."""
    found: dict[str, Completion] = {}
    for seed in range(10):
        for completions in sampler.sample([_request(seed)]):
            for completion in completions:
                found.setdefault(_reply_of(completion.text), completion)
        if len(found) == len(REPLIES):
            break
    return found


def assert_read_as_expected(found: dict[str, Completion]) -> None:
    assert set(found) == set(REPLIES)
    for reply, completion in found.items():
        reason, action = EXPECTED[reply]
        assert completion.finish_reason == ("length" if reply in CUT_OFF_REPLIES else "stop"), reply
        assert classify(completion, STATE, [], require_admissible=False) == (action, reason), reply


def test_every_reject_reason_through_the_hf_sampler(scripted_model):
    with make_sampler("hf", model=scripted_model, max_tokens=MAX_TOKENS) as sampler:
        assert_read_as_expected(sampled_once_each(sampler))


@requires_vllm
def test_every_reject_reason_through_the_vllm_sampler(scripted_model):
    with make_sampler("vllm", model=scripted_model, max_tokens=MAX_TOKENS, max_model_len=1024) as sampler:
        assert_read_as_expected(sampled_once_each(sampler))


@pytest.mark.slow
@requires_vllm
def test_every_reject_reason_through_the_openai_sampler(scripted_model, tmp_path):
    from tests.test_samplers import serve_with_vllm

    with (
        serve_with_vllm(scripted_model, tmp_path / "server.log") as base_url,
        make_sampler("openai", model="tiny", base_url=base_url, max_tokens=MAX_TOKENS, max_retries=1) as sampler,
    ):
        assert_read_as_expected(sampled_once_each(sampler))


def test_require_admissible_keeps_only_commands_of_the_state():
    keep = Completion("Action: look around", "stop")
    outside = Completion("Action: climb through the window", "stop")
    assert classify(keep, STATE, [], require_admissible=True) == ("look around", "ok")
    assert classify(outside, STATE, [], require_admissible=True) == (None, "not_admissible")
    assert classify(outside, STATE, [], require_admissible=False) == ("climb through the window", "ok")
    assert classify(keep, STATE, ["Look around."], require_admissible=False) == (None, "duplicate_alternative")
