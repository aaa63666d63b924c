"""A tiny offline Qwen3 model for tests and `kernelpilot train smoke`: no model hub needed.

A byte-level BPE tokenizer (1,024 tokens) is trained with `tokenizers` on this repository's
own text (the suite's problem files and the prompt boilerplate of agent/prompts.py), given
the chat special tokens and TRL's Qwen3 chat template (which TRL knows how to parse tool
calls from and how to mask for assistant-only loss); a random `Qwen3ForCausalLM` of about
0.14 M parameters is built from a fixed seed. Both are saved to a directory, which is
reused while its stamp (TINY_VERSION and the corpus digest) matches. A random model never
emits EOS: keep its completions short (16-32 tokens).

    path = build_tiny(Path(".cache/tiny"))          # a Hugging Face model directory
    python -m policy_training.tiny DIR

Needs the `train` extra (transformers, tokenizers, trl); set HF_HUB_OFFLINE=1 (done here).
"""
import hashlib
import json
import os
import sys
from importlib.resources import files
from pathlib import Path

from agent.policy import Backend
from agent.prompts import RULES, TURN_FORMAT, correction, device_facts, system_prompt
from tools.device import DeviceInfo
from tools.records import Mode

TINY_VERSION = 1
STAMP = "kernelpilot_tiny.json"
VOCAB_SIZE = 1024
SEED = 0
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
                  "<tool_response>", "</tool_response>", "<think>", "</think>")
PROBLEMS = Path(__file__).resolve().parent.parent / "benchmarks" / "problems"
ARCHITECTURE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, tie_word_embeddings=True, max_position_embeddings=32768)


def corpus() -> list[str]:
    """The texts the tokenizer learns from: our problem files and what every prompt says."""
    boilerplate = [system_prompt(backend) for backend in Backend] + [RULES, TURN_FORMAT, correction(1)]
    boilerplate.append(device_facts(DeviceInfo(Mode.CPU_INTERPRETER, "cpu", None)))
    return boilerplate + [path.read_text() for path in sorted(PROBLEMS.glob("*.py"))]


def corpus_digest(texts: list[str]) -> str:
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


def build_tiny(folder: Path) -> Path:
    """The tiny model and tokenizer in `folder` (built there unless its stamp matches); `folder`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = corpus()
    stamp = {"version": TINY_VERSION, "corpus": corpus_digest(texts), "vocab_size": VOCAB_SIZE, "seed": SEED}
    if (folder / STAMP).is_file() and json.loads((folder / STAMP).read_text()) == stamp:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts)
    tokenizer.save_pretrained(folder)
    random_model(tokenizer).save_pretrained(folder)
    (folder / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")   # last: a half-built folder is rebuilt
    return folder


def train_tokenizer(texts: list[str]):
    """A byte-level BPE with the chat special tokens, wrapped for transformers, with Qwen3's template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        padding_side="left")
    tokenizer.chat_template = files("trl").joinpath("chat_templates/qwen3.jinja").read_text()
    return tokenizer


def random_model(tokenizer):
    """A randomly initialised Qwen3ForCausalLM (~0.14 M parameters), the same for the same seed."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **ARCHITECTURE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m policy_training.tiny DIR")
    print(build_tiny(Path(sys.argv[1])))
