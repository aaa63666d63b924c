"""`kernelpilot train sft`: supervised fine-tuning on exported traces (CUDA-L1's stage 1), with TRL.

Reads DATA/FORM/SPLIT.jsonl of an export (`kernelpilot train export`: the best correct trace per
problem, prompts rendered by the agent's own prompt builder), fine-tunes MODEL with TRL's
`SFTTrainer` (full weights, LoRA, or DoRA with rank-stabilised LoRA over every linear layer),
and writes OUT/model (adapters merged), OUT/metrics.jsonl and OUT/summary.json
(policy_training/training.py); with PEFT also OUT/adapter, the adapter alone (with `save_merged
= false`, only that: what a piece of training on a lent machine ships back; merge.py rebuilds the
model from it). With the `messages` and `agent` forms only the assistant's tokens are learned
(`assistant_only_loss`; TRL swaps in its training template for Qwen3's, policy_training/chat_template.py
a checked ChatML one for templates TRL cannot patch, SmolLM2's); with
`prompt_completion`, only the completion's. Where it departs from CUDA-L1: its SFT data came from
six commercial LLMs; ours come from whichever mentors ran through `kernelpilot bench`.

    kernelpilot train sft --config sft.toml --set max_steps=20
    python -m policy_training sft --set model=tiny --set data=data/sft --set out=runs/sft
"""
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from policy_training.chat_template import swapped, training_template
from policy_training.config import PeftChoice, as_dict
from policy_training.export import MANIFEST, read_jsonl
from policy_training.problems import Split, manifest_digest
from policy_training.training import (METRICS, TrainingError, load_pretrained, losses, metrics_callback, peft_config,
                                      report_to, require_stack, save_model, saved_line, write_summary)

NO_ADAPTER = "save_merged = false needs peft = lora or dora+rslora (full fine-tuning has no adapter to save)"


class SFTForm(StrEnum):
    MESSAGES = "messages"                     # prompt + one assistant turn (analysis, then the kernel)
    PROMPT_COMPLETION = "prompt_completion"   # the same, split into prompt and completion
    AGENT = "agent"                           # prompt + the session's turns with tool calls and results


class Device(StrEnum):
    AUTO = "auto"                             # a GPU when torch sees one, else the CPU
    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class SFTConfig:
    model: str                                # the model directory to start from (a tiny one: python -m policy_training.tiny DIR)
    data: Path                                # an export folder (kernelpilot train export)
    out: Path                                 # the stage's folder: model/, metrics.jsonl, summary.json
    form: SFTForm = SFTForm.MESSAGES          # which rows of the export: messages, prompt_completion or agent
    split: Split = Split.TRAIN                # which split of the export to train on
    peft: PeftChoice = PeftChoice.NONE        # none (full fine-tuning), lora, dora+rslora
    save_merged: bool = True                  # write OUT/model; false: only OUT/adapter (needs peft)
    lora_r: int = 16                          # adapter rank
    lora_alpha: int = 32                      # adapter scale numerator
    lora_dropout: float = 0.0                 # dropout on the adapters' input
    learning_rate: float = 1e-5               # peak learning rate
    lr_scheduler: str = "linear"              # transformers' scheduler name (linear, cosine, constant, ...)
    warmup_steps: float = 0.0                 # warm-up: a step count, or a share of all steps when below 1
    epochs: float = 1.0                       # passes over the rows (unless max_steps is set)
    max_steps: int | None = None              # optimizer steps; none: epochs decide
    batch_size: int = 1                       # rows per device per step
    grad_accum: int = 1                       # steps accumulated per optimizer step
    max_length: int = 8192                    # tokens per row (longer rows are cut at the end)
    assistant_only_loss: bool = True          # messages/agent forms: learn the assistant's tokens only
    device: Device = Device.AUTO              # auto, cpu or cuda
    bf16: bool = False                        # bfloat16 mixed precision (GPU only)
    seed: int = 0                             # the trainer's seed
    logging_steps: int = 1                    # log (metrics.jsonl, TensorBoard) every N steps

    def check(self) -> str | None:
        positive = {"learning_rate": self.learning_rate, "epochs": self.epochs, "batch_size": self.batch_size,
                    "grad_accum": self.grad_accum, "max_length": self.max_length, "lora_r": self.lora_r,
                    "logging_steps": self.logging_steps, "max_steps": self.max_steps or 1}
        bad = [f"{key} must be positive, not {value}" for key, value in positive.items() if value <= 0]
        if self.bf16 and self.device is Device.CPU:
            bad.append("bf16 needs a GPU (device = cuda or auto)")
        if not self.save_merged and self.peft is PeftChoice.NONE:
            bad.append(NO_ADAPTER)
        return "; ".join(bad) or None


def rows_path(config: SFTConfig) -> Path:
    return config.data / config.form.value / f"{config.split.value}.jsonl"


def read_rows(config: SFTConfig) -> list[dict]:
    path = rows_path(config)
    if not path.is_file():
        raise TrainingError(f"{path}: no such file (is {config.data} an export of `kernelpilot train export`?)")
    rows = read_jsonl(path)
    if not rows:
        raise TrainingError(f"{path} has no rows: the export found no correct trace for this split "
                            f"(see {config.data / MANIFEST}, 'skipped')")
    return rows


def use_cpu(device: Device) -> bool:
    import torch

    if device is Device.CUDA and not torch.cuda.is_available():
        raise TrainingError("device = cuda, and torch sees no GPU")
    return device is Device.CPU or not torch.cuda.is_available()


def trainer_args(config: SFTConfig):
    from trl import SFTConfig as TRLSFTConfig

    return TRLSFTConfig(
        output_dir=str(config.out / "trainer"), learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_steps, num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, max_length=config.max_length,
        assistant_only_loss=config.assistant_only_loss and config.form is not SFTForm.PROMPT_COMPLETION,
        use_cpu=use_cpu(config.device), bf16=config.bf16, seed=config.seed, logging_steps=config.logging_steps,
        save_strategy="no", report_to=report_to())


def run_sft(config: SFTConfig, log=print) -> dict:
    """Fine-tune, save OUT/model, write OUT/metrics.jsonl and OUT/summary.json; the summary."""
    started, rows = time.monotonic(), read_rows(config)
    require_stack()
    from datasets import Dataset
    from trl import SFTTrainer

    model, tokenizer = load_pretrained(config.model)
    config.out.mkdir(parents=True, exist_ok=True)
    metrics = metrics_callback(config.out / METRICS)
    log(f"sft: {len(rows)} row(s) of {rows_path(config)}, model {config.model}, peft {config.peft.value}")
    args = trainer_args(config)
    template = training_template(tokenizer, rows) if args.assistant_only_loss else None
    with swapped(tokenizer, template):          # the rows are tokenized here; the model's own template is saved
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, callbacks=[metrics],
                             peft_config=peft_config(config.peft, config.lora_r, config.lora_alpha, config.lora_dropout))
    trainer.train()
    saved = save_model(trainer.model, tokenizer, config.out, config.model, config.save_merged)
    seen = losses(metrics.logged)
    manifest = config.data / MANIFEST
    return write_summary(config.out, "sft", started, {
        "rows": len(rows), "steps": trainer.state.global_step, "loss_first": seen[0] if seen else None,
        "loss_last": seen[-1] if seen else None, **saved.record(), "started_from": config.model,
        "data": {"rows": str(rows_path(config)), "manifest": str(manifest),
                 "manifest_sha256": manifest_digest(manifest) if manifest.is_file() else None},
        "config": as_dict(config)})


def summary_line(summary: dict) -> str:
    loss = (f"loss {summary['loss_first']:.3f} -> {summary['loss_last']:.3f}" if summary["loss_first"] is not None
            else "no loss logged")
    return (f"sft: {summary['steps']} step(s) on {summary['rows']} row(s), {loss}, {summary['seconds']} s; "
            f"{saved_line(summary)}")

