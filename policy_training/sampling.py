"""Sampling completions from a model with transformers, as the stages (rft, grpo, best-of) need it.

The prompt is the agent's own (agent/prompts.py `build_messages`) rendered with the model's chat
template and a generation prompt, exactly as `--policy local:DIR` renders a turn; `k` samples are
drawn at once (`num_return_sequences`). A sample keeps its token ids, ending with EOS when the
model stopped, so a trainer can learn from it as generated.

`sample_batch` does the same for several prompts in one `generate` call (the evaluation stage's
batches across problems): the prompts are left-padded to one length, the attention mask hides the
padding, so a greedy answer is the one the prompt gets alone (up to float noise in the padded
matmuls). `sample` is `sample_batch` of one prompt. With `static_cache` the KV cache is allocated once at
its full length (prompt width + max_new_tokens), and on a GPU transformers compiles the decoding
step; greedy answers are the dynamic cache's (checked on a CPU, where nothing is compiled).

    samples = sample(model, tokenizer, messages, k=4, max_new_tokens=32, temperature=1.0)
    samples[0].text, samples[0].ids, samples[0].stopped
    per_prompt = sample_batch(model, tokenizer, [messages_a, messages_b], k=1, max_new_tokens=32, temperature=0)

Needs the `train` extra (torch, transformers), imported by the caller.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sample:
    text: str                   # the completion, special tokens removed
    ids: tuple[int, ...]        # its token ids (EOS included when the model stopped; the padding after it cut)
    stopped: bool               # it ended with EOS within the token budget


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The rendered prompt's token ids (the chat template, then the assistant's generation prompt)."""
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(rendered["input_ids"])


def sample(model, tokenizer, messages: list[dict], k: int, max_new_tokens: int, temperature: float,
           top_p: float = 1.0, static_cache: bool = False) -> list[Sample]:
    """`k` completions of one prompt (greedy, all alike, when temperature is 0)."""
    return sample_batch(model, tokenizer, [messages], k, max_new_tokens, temperature, top_p, static_cache)[0]


def sample_batch(model, tokenizer, prompts: list[list[dict]], k: int, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, static_cache: bool = False) -> list[list[Sample]]:
    """`k` completions of each prompt, from one generate call over the left-padded prompts
    (greedy when temperature is 0); one list of samples per prompt, in order. `static_cache`: the
    KV cache allocated once at its full length, which lets transformers compile the decoding step
    on a GPU (CUDA graphs: a small model's generation is otherwise bound by kernel launches)."""
    rows = [prompt_ids(tokenizer, messages) for messages in prompts]
    width, pad = max(map(len, rows)), padding_id(tokenizer)
    ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], device=model.device)       # (prompts, width)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=model.device)
    greedy = temperature <= 0
    sampling = {"do_sample": False} if greedy else {"do_sample": True, "temperature": temperature, "top_p": top_p}
    drawn_k = 1 if greedy else k            # greedy answers are alike: one each, repeated (transformers refuses more)
    if static_cache:
        sampling["cache_implementation"] = "static"
    with torch.no_grad():
        output = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                num_return_sequences=drawn_k, pad_token_id=pad, **sampling)  # (prompts * drawn_k, width + new)
    drawn = [as_sample(tokenizer, row[width:].tolist()) for row in output]
    return [drawn[i * drawn_k:(i + 1) * drawn_k] * (k // drawn_k) for i in range(len(rows))]


def padding_id(tokenizer) -> int:
    """The tokenizer's pad token, else its EOS (what generate pads finished rows with either way)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def as_sample(tokenizer, new: list[int]) -> Sample:
    eos = tokenizer.eos_token_id
    if eos in new:                  # what follows EOS is generate's padding
        new = new[:new.index(eos) + 1]
    return Sample(tokenizer.decode(new, skip_special_tokens=True), tuple(new), bool(new) and new[-1] == eos)


def completion_ids(tokenizer, text: str) -> list[int]:
    """A written completion (a seed or guidance kernel) as the model would emit it: its tokens, then EOS."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
