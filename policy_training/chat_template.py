"""The chat template SFT learns with when a model's own has no `{% generation %}` markers.

TRL's assistant-only loss needs those markers to know which tokens are the assistant's; TRL 1.16
patches the templates it knows (Qwen3's, ...) and refuses the rest, SmolLM2's ChatML template among
them (found on the GPU machine, stop 23). `training_template` offers a ChatML template with the
markers, the assistant's `<|im_end|>` inside them (so the model learns to stop), and uses it only
where it renders every training conversation exactly as the model's own template does: the tokens
learned are then the tokens the model sees at inference. Anything else is one clear error, never a
silently different rendering. The model's own template is what gets saved with the trained model.
"""
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from policy_training.training import TrainingError

CHATML_TRAINING = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def training_template(tokenizer, rows: Iterable[dict]) -> str | None:
    """None where the tokenizer's own template has the markers or TRL patches it (Qwen3's, ...); else
    CHATML_TRAINING, checked to render each training row (its `messages`, and its `tools` where the
    agent form has them) as the own template does (TrainingError naming the first that differs)."""
    from trl.chat_template_utils import has_generation_markers     # the test SFTTrainer itself makes

    own = tokenizer.chat_template
    if has_generation_markers(own) or trl_patches(tokenizer):
        return None
    for number, row in enumerate(rows, 1):
        if render(tokenizer, row, own) != render(tokenizer, row, CHATML_TRAINING):
            raise TrainingError(
                f"the model's chat template has no {{% generation %}} markers (needed to learn the assistant's "
                f"tokens only) and it is not plain ChatML: training row {number} renders otherwise. "
                "Use form = prompt_completion, or give the model a template with the markers")
    return CHATML_TRAINING


def trl_patches(tokenizer) -> bool:
    from trl.chat_template_utils import get_training_chat_template

    try:
        get_training_chat_template(tokenizer)
    except ValueError:                     # "patching is not supported for this template"
        return False
    return True


def render(tokenizer, row: dict, template: str) -> str:
    tools = row.get("tools")
    tools = json.loads(tools) if isinstance(tools, str) else tools      # the agent form keeps them as one JSON string
    return tokenizer.apply_chat_template(row["messages"], tools=tools, tokenize=False, chat_template=template)


@contextmanager
def swapped(tokenizer, template: str | None) -> Iterator[None]:
    """`template` as the tokenizer's own inside the block (where the trainer tokenizes its rows)."""
    own = tokenizer.chat_template
    if template is not None:
        tokenizer.chat_template = template
    try:
        yield
    finally:
        tokenizer.chat_template = own
