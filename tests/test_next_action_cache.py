"""The next_action reward's hot path: admissible lists normalized once per label (one pass over the joined
list, then a bounded LRU cache keyed by the label string), with results equal to the one-by-one rule."""

from __future__ import annotations

import json
import threading

import pytest

from openrlhf_act.actions import admissible_index, match_admissible, normalize_action
from openrlhf_act.rewards import next_action
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.schema import NextActionLabel, encode_label

TRICKY = [
    "Open  Door.",
    "open door",
    "\tlook\naround ",
    "ΟΔΟΣ",  # a final sigma lowers by its context: "οδος" ends in "ς"
    "ΟΔΟΣ!",
    "'quoted'",
    "…",
    "",
    " ",
    "move cup\u00a0to table",  # a no-break space is whitespace
    "A\u2028B",  # so is a line separator
    "İstanbul",  # lowers to two code points
    "focus on \x00 null",  # the join separator inside a command: the one-by-one path
    "go to kitchen",
]


@pytest.mark.parametrize("commands", [TRICKY, [c for c in TRICKY if "\x00" not in c], [], ["only"]])
def test_index_normalizes_exactly_as_one_by_one_and_the_first_command_wins(commands):
    expected: dict[str, str] = {}
    for command in commands:
        expected.setdefault(normalize_action(command), command)
    assert admissible_index(commands) == expected
    for command in commands:
        assert match_admissible(command, admissible_index(commands)) == match_admissible(command, commands)


def _label(admissible: list[str], expert: str = "open door") -> str:
    return encode_label(NextActionLabel(expert, tuple(admissible), "t0", "scienceworld", 1))


RESPONSES = [
    "Action: Open door.",
    "Action: look around",
    "look   around",  # bare, admissible
    "Action: eat door",
    "no action at all",
    "Action: ΟΔΟΣ",
]


def test_cached_string_labels_score_as_decoded_dict_labels():
    config = RewardConfig()
    label = _label(TRICKY)
    for response in RESPONSES:
        cached = next_action.next_action_reward(response, label, config)
        again = next_action.next_action_reward(response, label, config)
        uncached = next_action.next_action_reward(response, json.loads(label), config)  # a dict: never cached
        assert cached == again == uncached, response
    other = _label(["eat door"])  # another label, another entry: nothing leaks between labels
    assert next_action.next_action_reward("Action: look around", other, config).logs["admissible"] == 0.0
    assert next_action.next_action_reward("Action: eat door", other, config).logs["admissible"] == 1.0


def test_threads_share_the_cache_and_it_stays_bounded():
    config = RewardConfig()
    labels = [_label([f"take item {i}", "look around"]) for i in range(next_action.LABEL_CACHE_SIZE + 50)]
    expected = [next_action.next_action_reward("Action: take item 3", lb, config) for lb in labels[:8]]
    results: dict[int, list] = {}

    def score(worker: int) -> None:
        results[worker] = [next_action.next_action_reward("Action: take item 3", lb, config) for lb in labels[:8]]

    threads = [threading.Thread(target=score, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(results[w] == expected for w in range(8))
    for lb in labels:
        next_action.next_action_reward("Action: look around", lb, config)
    assert next_action._prepared_text.cache_info().currsize <= next_action.LABEL_CACHE_SIZE
