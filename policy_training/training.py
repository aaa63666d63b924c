"""What every training stage shares: loading a model directory, the PEFT choice, the logs, the
saved model directory and the summary. The training stack (transformers, peft, trl) is imported
inside these functions only, so importing this module costs nothing.

A stage's folder OUT holds:
- `model/`: a Hugging Face model directory (adapters merged into the weights, the tokenizer with
  its inference chat template): `--policy local:OUT/model`, or served by vLLM/SGLang; left out
  when the stage's `save_merged` is false;
- `adapter/` (PEFT stages only): the adapter alone, as PEFT saves it before merging, plus
  `kernelpilot_base.json` (the base it applies to and that base's architecture): megabytes, not
  the model's hundreds, that `kernelpilot train merge` turns back into the model elsewhere (merge.py);
- `metrics.jsonl`: one line per logging step (TRL's own logs: loss, learning rate, grad norm, ...);
- `summary.json`: what the stage did (rows, steps, first and last loss, seconds, config, versions);
- `trainer/`: the trainer's working folder (TensorBoard event files under runs/ when installed).

    model, tokenizer = load_pretrained("tiny/")
    peft = peft_config(PeftChoice.DORA_RSLORA, r=16, alpha=32, dropout=0.0)
    saved = save_model(trainer.model, tokenizer, out, base="tiny/", merged=True)
"""
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from policy_training.config import PeftChoice
from tools.device import versions
from tools.version import own_version

METRICS, SUMMARY, MODEL, ADAPTER = "metrics.jsonl", "summary.json", "model", "adapter"
BASE_RECORD = "kernelpilot_base.json"       # in OUT/adapter: the base it applies to, and its architecture
STACK = ("trl", "transformers", "peft", "datasets")
ARCHITECTURE = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "head_dim", "tie_word_embeddings")


class TrainingError(RuntimeError):
    """A stage cannot run with what it was given: no rows, an unusable model directory."""


class MissingStack(TrainingError):
    """The `train` extra is not installed."""


def require_stack(names: tuple[str, ...] = STACK) -> None:
    """One clear line when the `train` extra (or the part of it named) is missing."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
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


@dataclass(frozen=True)
class Saved:
    """What a stage saved: OUT/model (None when save_merged is false) and OUT/adapter (None without PEFT)."""

    model: Path | None
    adapter: Path | None
    base: str                                   # the model directory the stage started from

    def record(self) -> dict:
        """The summary's `model` and `adapter` fields."""
        adapter = None if self.adapter is None else {
            "folder": str(self.adapter), "bytes": folder_bytes(self.adapter), "base": self.base}
        return {"model": None if self.model is None else str(self.model), "adapter": adapter}


def save_model(model, tokenizer, out: Path, base: str, merged: bool = True) -> Saved:
    """OUT/adapter (a PEFT model's adapter alone, saved before merging) and, when `merged`,
    OUT/model: adapters merged into the weights, so it loads as a plain model anywhere."""
    adapter = None
    if hasattr(model, "merge_and_unload"):
        adapter = out / ADAPTER
        model.save_pretrained(adapter)
        record = {"base": base, "architecture": architecture(model.get_base_model().config)}
        (adapter / BASE_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    if not merged:
        return Saved(None, adapter, base)
    if adapter is not None:
        model = model.merge_and_unload()
    folder = out / MODEL
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Saved(folder, adapter, base)


def architecture(config) -> dict:
    """The fields of a model config that an adapter's shapes depend on (those the config has)."""
    return {key: getattr(config, key) for key in ARCHITECTURE if hasattr(config, key)}


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def saved_line(summary: dict) -> str:
    """'model: DIR', 'adapter: DIR (N bytes)' or both, for the stages' one-line summaries."""
    parts = [f"model: {summary['model']}"] if summary.get("model") else []
    if summary.get("adapter"):
        parts.append(f"adapter: {summary['adapter']['folder']} ({summary['adapter']['bytes']} bytes)")
    return "; ".join(parts) or "nothing saved"


def write_summary(out: Path, stage: str, started: float, record: dict) -> dict:
    summary = {"stage": stage, **record, "seconds": round(time.monotonic() - started, 1),
               "versions": {**versions(), "kernelpilot": own_version()}}
    (out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    return summary
