"""Sampling completions from a model with transformers, as the stages (rft, grpo, best-of) need it.

The prompt is the agent's own (agent/prompts.py `build_messages`) rendered with the model's chat
template and a generation prompt, exactly as `--policy local:DIR` renders a turn; `k` samples are
drawn at once (`num_return_sequences`). A sample keeps its token ids, ending with EOS when the
model stopped, so a trainer can learn from it as generated.

    samples = sample(model, tokenizer, messages, k=4, max_new_tokens=32, temperature=1.0)
    samples[0].text, samples[0].ids, samples[0].stopped

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
           top_p: float = 1.0) -> list[Sample]:
    """`k` completions of one prompt (greedy, all alike, when temperature is 0)."""
    ids = torch.tensor([prompt_ids(tokenizer, messages)], device=model.device)
    sampling = ({"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0
                else {"do_sample": False})
    with torch.no_grad():
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                num_return_sequences=k, pad_token_id=tokenizer.pad_token_id, **sampling)
    return [as_sample(tokenizer, row[ids.shape[1]:].tolist()) for row in output]


def as_sample(tokenizer, new: list[int]) -> Sample:
    eos = tokenizer.eos_token_id
    if eos in new:                  # what follows EOS is generate's padding
        new = new[:new.index(eos) + 1]
    return Sample(tokenizer.decode(new, skip_special_tokens=True), tuple(new), bool(new) and new[-1] == eos)


def completion_ids(tokenizer, text: str) -> list[int]:
    """A written completion (a seed or guidance kernel) as the model would emit it: its tokens, then EOS."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
