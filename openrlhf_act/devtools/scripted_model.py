"""A tiny causal LM whose replies are chosen from a fixed list: real weights, scripted behaviour.

Tests of what happens to a policy's completions (prose, a reply cut off by the length limit, several
actions, ...) need a model that produces exactly those completions through the real engines (vLLM,
transformers, a vLLM server). A random tiny model never does. This one does, by construction:

* every reply is one added token of the tokenizer (its text decodes verbatim, newlines included);
  the empty reply ``""`` is the end of turn right away;
* the decoder layers add nothing to the residual stream (their output projections are zero), so the
  logits at a position depend only on the token there: the model is a bigram table, ``lm_head`` rows
  aligned with the embedding of the token they should follow;
* after the chat template's generation prompt every reply is equally likely, so sampling at
  temperature 1 draws replies uniformly (greedy decoding takes the first); after a reply comes the
  end of turn, except for replies listed in ``cut_off``, which continue with a filler token forever
  and so end only at ``max_tokens`` (finish reason ``length``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from openrlhf_act.devtools.tiny_model import build_tiny_tokenizer, save_model

FILLER = " and so on"
_LOGIT_SCALE = 8.0  # with unit-norm embeddings and RMSNorm, a chosen next token wins by ~90 logits


def build_scripted_model(
    out_dir: str | Path,
    replies: Sequence[str],
    *,
    cut_off: Sequence[str] = (),
    hidden_size: int = 128,
    seed: int = 0,
) -> Path:
    """Write the model and tokenizer to ``out_dir`` and return the path (rebuilt on every call)."""
    import torch
    from tokenizers import AddedToken
    from transformers import Qwen2Config, Qwen2ForCausalLM

    unknown = sorted(set(cut_off) - set(replies))
    if unknown or not replies:
        raise ValueError(f"cut_off must name replies from the list, got {unknown}" if unknown else "no replies")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    if "" in cut_off:
        raise ValueError("the empty reply ends at once; it cannot be cut off")
    texts = [text for text in dict.fromkeys([*replies, FILLER]) if text]
    tokenizer.add_tokens([AddedToken(text, normalized=False, special=False) for text in texts])
    ids = {text: tokenizer.convert_tokens_to_ids(text) for text in texts}
    ids[""] = tokenizer.eos_token_id
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False
    )
    prompt_end = tokenizer(prompt, add_special_tokens=False)["input_ids"][-1]

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=hidden_size // 2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = torch.nn.functional.normalize(torch.randn(len(tokenizer), hidden_size), dim=-1)
        # The tokens of the script get orthonormal embeddings: no cross-talk, so equal logits are equal.
        scripted = sorted({prompt_end, tokenizer.eos_token_id, *ids.values()})
        if len(scripted) > hidden_size:
            raise ValueError(f"{len(scripted)} scripted tokens need hidden_size >= {len(scripted)}")
        embed[scripted] = torch.linalg.qr(torch.randn(hidden_size, len(scripted)))[0].T
        model.model.embed_tokens.weight.copy_(embed)
        head = torch.zeros(len(tokenizer), hidden_size)
        for text in dict.fromkeys(replies):
            head[ids[text]] += embed[prompt_end]  # the generation prompt -> any reply
            if not text:
                continue
            follower = FILLER if text in cut_off else None
            head[tokenizer.eos_token_id if follower is None else ids[follower]] += embed[ids[text]]
        head[ids[FILLER]] += embed[ids[FILLER]]  # the filler repeats itself
        model.lm_head.weight.copy_(head * _LOGIT_SCALE)
    tokenizer.save_pretrained(out)
    save_model(model, tokenizer, out)
    return out
