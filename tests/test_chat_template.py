"""SFT with a model whose chat template has no `{% generation %}` markers (policy_training/
chat_template.py): SmolLM2's ChatML template is such a one, and TRL refused it on the GPU machine.
The tiny model on a CPU, its template replaced by plain ChatML written here in SmolLM2's shape (a
default system turn when the first message is not one)."""
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from trl.chat_template_utils import has_generation_markers

from policy_training.chat_template import CHATML_TRAINING, training_template
from policy_training.export import write_jsonl
from policy_training.sft import SFTConfig, run_sft
from policy_training.tiny import build_tiny
from policy_training.training import TrainingError

ANSWER = "## Performance analysis\nOne fused pass over the rows.\n\n```python\nimport triton\n```"
PLAIN_CHATML = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nA default system turn.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CONVERSATION = [{"role": "system", "content": "You write Triton kernels."},
                {"role": "user", "content": "Fuse: scale, bias, relu."}, {"role": "assistant", "content": ANSWER}]


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """The tiny model, its tokenizer's template swapped for PLAIN_CHATML (no markers)."""
    folder = build_tiny(tmp_path_factory.mktemp("tiny"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = PLAIN_CHATML
    tokenizer.save_pretrained(folder)
    return folder


def test_sft_learns_through_a_plain_chatml_template_and_saves_the_models_own(plain, tmp_path):
    data = tmp_path / "data"
    write_jsonl(data / "messages" / "train.jsonl", [{"messages": CONVERSATION}] * 2)
    summary = run_sft(SFTConfig(model=str(plain), data=data, out=tmp_path / "sft", max_steps=2, batch_size=2,
                                max_length=256), log=lambda line: None)
    assert summary["steps"] == 2 and summary["loss_first"] is not None
    saved = json.loads((tmp_path / "sft" / "model" / "tokenizer_config.json").read_text()).get("chat_template")
    saved = saved or (tmp_path / "sft" / "model" / "chat_template.jinja").read_text()
    assert saved == PLAIN_CHATML


def test_the_training_template_learns_the_assistants_tokens_and_its_end_of_turn_only(plain):
    tokenizer = AutoTokenizer.from_pretrained(plain)
    assert not has_generation_markers(tokenizer.chat_template) and has_generation_markers(CHATML_TRAINING)
    assert training_template(tokenizer, [{"messages": CONVERSATION}]) == CHATML_TRAINING
    encoded = tokenizer.apply_chat_template(CONVERSATION, chat_template=CHATML_TRAINING, tokenize=True,
                                            return_dict=True, return_assistant_tokens_mask=True)
    learned = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
    assert tokenizer.decode(learned) == ANSWER + "<|im_end|>"


def test_a_template_that_renders_otherwise_is_one_clear_error(plain):
    tokenizer = AutoTokenizer.from_pretrained(plain)
    no_system = [m for m in CONVERSATION if m["role"] != "system"]     # the own template adds its default turn
    with pytest.raises(TrainingError, match="row 2 renders otherwise"):
        training_template(tokenizer, [{"messages": CONVERSATION}, {"messages": no_system}])
    with_tools = tokenizer.chat_template.replace("{% for m in messages %}",     # one that renders the agent form's tools
                                                 "{% for t in tools or [] %}{{ t['name'] }}{% endfor %}{% for m in messages %}")
    tokenizer.chat_template = with_tools
    assert training_template(tokenizer, [{"messages": CONVERSATION}]) == CHATML_TRAINING
    with pytest.raises(TrainingError, match="row 1 renders otherwise"):
        training_template(tokenizer, [{"messages": CONVERSATION, "tools": json.dumps([{"name": "benchmark"}])}])
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    with pytest.raises(TrainingError, match="not plain ChatML"):
        training_template(tokenizer, [{"messages": CONVERSATION}])
