"""The learning check's toy task (openrlhf_act/devtools/learning_task.py, run by bench/bench_learning.py) is
what a learning check needs: the right action depends on the state, and its prompts are short in the task
tokenizer. The GRPO learning test itself waits for settings under which GRPO learns the task on CPU (the bench
does not reach the bar yet: README, "Does it learn?")."""

from __future__ import annotations


def test_the_task_depends_on_the_state_and_its_prompts_are_short():
    """The same two candidates are right in one state and wrong in the other, on both splits; with the task
    tokenizer a judgment prompt stays under 48 tokens and every framing text is one token."""
    from data_tools.pairs import contrast_rows
    from openrlhf_act.devtools.learning_task import task_pairs, task_vocabulary
    from openrlhf_act.devtools.tiny_model import build_tiny_tokenizer

    pairs = task_pairs(0)
    for split, chosen in pairs.items():
        experts = {}
        for pair in chosen:
            candidates = frozenset((pair.state.expert_action, *pair.alternatives))
            experts.setdefault(candidates, set()).add(pair.state.expert_action)
        assert any(len(names) == 2 for names in experts.values()), split
    vocabulary = task_vocabulary()
    tokenizer = build_tiny_tokenizer(vocabulary=vocabulary)
    for text in vocabulary.single_tokens:
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == 1, text
    for row in contrast_rows(pairs["eval"], seed=0, split="eval"):
        text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 48
