"""The `local` policy: a Hugging Face model directory (a `kernelpilot train` stage's output) run
in-process with transformers, for small models and tests; a large one is better served by vLLM
or SGLang behind the `openai` policy (README, "Retraining the policy").

Each turn renders the conversation with the model's own chat template (the tools passed in the
function-calling format), generates, and reads the reply as Qwen/Hermes-style models write it:
each `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` is a tool call; a reply with no
tool call whose last ```python block defines `ModelNew` submits that kernel (the single-turn
form SFT trains: the analysis, then the kernel). A `<think>...</think>` block is left out of the
turn's text (reasoning is not the performance analysis). The model loads on the first turn, on
CUDA where torch sees a GPU (after the runtime's sandbox has started), else on the CPU.

    policy = LocalPolicy.load("runs/sft/model")         # or --policy local:runs/sft/model
    turn = policy.turn(turn_input)

Needs the `train` extra (transformers); it is imported only here, and only when a turn runs.
"""
import json
import os
import re
from pathlib import Path

import torch

from agent.errors import PolicyError
from agent.policy import PolicyTurn, ToolCall, TurnInput, python_blocks

TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)
DEFAULT_MAX_NEW_TOKENS = 2048


class LocalPolicy:
    name = "local"

    def __init__(self, model_dir: Path, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0):
        self.model_dir, self.max_new_tokens, self.temperature = Path(model_dir), max_new_tokens, temperature
        self.model = str(self.model_dir)          # the origin recorded with its candidates
        self._loaded = None

    @staticmethod
    def load(model_dir: str | Path, max_new_tokens: int | None = None) -> "LocalPolicy":
        """A policy for the model in `model_dir` (checked now, loaded on the first turn).
        KERNELPILOT_LOCAL_MAX_NEW_TOKENS bounds each reply (default 2048)."""
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise PolicyError(f"{path}: not a Hugging Face model directory (no config.json)")
        limit = max_new_tokens or int(os.environ.get("KERNELPILOT_LOCAL_MAX_NEW_TOKENS", DEFAULT_MAX_NEW_TOKENS))
        return LocalPolicy(path, max_new_tokens=limit)

    def turn(self, turn_input: TurnInput) -> PolicyTurn:
        tokenizer, model = self._load()
        prompt = tokenizer.apply_chat_template(turn_input.messages, tools=turn_input.tools, add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True).to(model.device)
        sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            output = model.generate(**prompt, max_new_tokens=self.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                    **sampling)
        new = output[0, prompt["input_ids"].shape[1]:]
        text = tokenizer.decode(new, skip_special_tokens=False)
        for token in {tokenizer.eos_token, tokenizer.pad_token} - {None}:
            text = text.replace(token, "")
        return parse_reply(text, turn_input.turn, tokens=int(prompt["input_ids"].shape[1] + new.shape[0]))

    def _load(self):
        if self._loaded is None:
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as error:
                raise PolicyError(f"the local policy needs the train extra: pip install 'kernelpilot[train]' "
                                  f"({error})") from None
            device = "cuda" if torch.cuda.is_available() else "cpu"
            tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            if tokenizer.chat_template is None:
                raise PolicyError(f"{self.model_dir}: the tokenizer has no chat template")
            model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32 if device == "cpu"
                                                         else torch.bfloat16).to(device).eval()
            self._loaded = (tokenizer, model)
        return self._loaded


def parse_reply(text: str, turn: int, tokens: int = 0) -> PolicyTurn:
    """A generated reply as a turn: its tool calls, or the kernel of its last ```python block."""
    text = THINK.sub("", text).strip()
    calls = tuple(tool_call(raw, f"local-{turn}-{n}") for n, raw in enumerate(TOOL_CALL.findall(text)))
    shown = TOOL_CALL.sub("", text).strip()
    if not calls:
        kernel = last_python_block(text)
        if kernel is not None and "class ModelNew" in kernel:
            calls = (ToolCall(id=f"local-{turn}-0", name="submit", arguments=json.dumps({"code": kernel})),)
    return PolicyTurn(text=shown, tool_calls=calls, tokens=tokens)


def tool_call(raw: str, call_id: str) -> ToolCall:
    """One `<tool_call>` body; one that is not a JSON object with a name goes to the toolbox as it
    is, which answers with the error (the model sees it and can correct it)."""
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        return ToolCall(id=call_id, name="unparsed_tool_call", arguments=raw)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("name"), str):
        return ToolCall(id=call_id, name="unparsed_tool_call", arguments=raw)
    arguments = parsed.get("arguments", {})
    return ToolCall(id=call_id, name=parsed["name"],
                    arguments=arguments if isinstance(arguments, str) else json.dumps(arguments))


def last_python_block(text: str) -> str | None:
    blocks = python_blocks(text)
    return blocks[-1] if blocks else None
