"""What every training stage shares: loading a model directory, the PEFT choice, the logs, the
saved model directory and the summary. The training stack (transformers, peft, trl) is imported
inside these functions only, so importing this module costs nothing.

A stage's folder OUT holds:
- `model/`: a Hugging Face model directory (adapters merged into the weights, the tokenizer with
  its inference chat template): `--policy local:OUT/model`, or served by vLLM/SGLang;
- `metrics.jsonl`: one line per logging step (TRL's own logs: loss, learning rate, grad norm, ...);
- `summary.json`: what the stage did (rows, steps, first and last loss, seconds, config, versions);
- `trainer/`: the trainer's working folder (TensorBoard event files under runs/ when installed).

    model, tokenizer = load_pretrained("tiny/")
    peft = peft_config(PeftChoice.DORA_RSLORA, r=16, alpha=32, dropout=0.0)
"""
import importlib.util
import json
import os
import time
from pathlib import Path

from policy_training.config import PeftChoice
from tools.device import versions
from tools.version import own_version

METRICS, SUMMARY, MODEL = "metrics.jsonl", "summary.json", "model"


class TrainingError(RuntimeError):
    """A stage cannot run with what it was given: no rows, an unusable model directory."""


class MissingStack(TrainingError):
    """The `train` extra is not installed."""


def require_stack() -> None:
    """One clear line when the `train` extra is missing."""
    missing = [name for name in ("trl", "transformers", "peft", "datasets") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingStack(f"training needs the train extra ({', '.join(missing)} missing): "
                            "pip install 'kernelpilot[train]'")


def load_pretrained(path: str | Path):
    """A causal LM and its tokenizer from a local directory (never the hub), in float32."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (Path(path) / "config.json").is_file():
        raise TrainingError(f"{path}: not a Hugging Face model directory (no config.json); "
                            "`python -m policy_training.tiny DIR` builds a tiny one")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.chat_template is None:
        raise TrainingError(f"{path}: its tokenizer has no chat template")
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tokenizer


def peft_config(choice: PeftChoice, r: int, alpha: int, dropout: float):
    """None for full fine-tuning, else a LoraConfig over every linear layer."""
    if choice is PeftChoice.NONE:
        return None
    from peft import LoraConfig

    dora = choice is PeftChoice.DORA_RSLORA
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM",
                      use_dora=dora, use_rslora=dora)


def report_to() -> list[str]:
    """TensorBoard when it is installed; nothing else is reported anywhere."""
    return ["tensorboard"] if importlib.util.find_spec("tensorboard") else []


def metrics_callback(path: Path):
    """A TrainerCallback appending each of the trainer's logs to `path` as a JSON line."""
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        def __init__(self):
            self.logged: list[dict] = []
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

        def on_log(self, args, state, control, logs=None, **kwargs):
            entry = {"step": state.global_step, "epoch": state.epoch, **(logs or {})}
            self.logged.append(entry)
            with open(path, "a") as handle:
                handle.write(json.dumps(entry) + "\n")

    return MetricsLog()


def losses(logged: list[dict]) -> list[float]:
    return [entry["loss"] for entry in logged if "loss" in entry]


def save_model(model, tokenizer, out: Path) -> Path:
    """OUT/model: adapters merged into the weights, so it loads as a plain model anywhere."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    folder = out / MODEL
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_summary(out: Path, stage: str, started: float, record: dict) -> dict:
    summary = {"stage": stage, **record, "seconds": round(time.monotonic() - started, 1),
               "versions": {**versions(), "kernelpilot": own_version()}}
    (out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    return summary
