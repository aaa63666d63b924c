"""`kernelpilot train merge`: a base model directory plus a chain of adapters, merged into a plain model.

Training on a lent GPU machine comes in pieces of at most 30 minutes, and each piece's output
comes back through a 64 MiB channel: a fine-tuned SmolLM2-135M (540 MB in float32) does not fit,
its LoRA adapter (a few MB) does. So a piece runs its stages with PEFT and `save_merged = false`
and ships each stage's OUT/adapter; the next piece, on a fresh machine, rebuilds the model here
from the base directory and the adapters trained so far, then starts its own stage from OUT/model.

Each adapter is applied to the model as the chain left it and merged into the weights before the
next one, because that is how the chain was trained: each stage started from the previous
stage's merged model. Before applying one, what can be checked is: the folder is a PEFT LoRA
adapter (adapter_config.json and adapter_model.safetensors), the architecture recorded beside it
by the stage (kernelpilot_base.json: vocabulary, hidden size, layers, ...) is the model's, and
every adapter tensor's shape fits the layer it names. PEFT's own `base_model_name_or_path` is a
path on the machine that trained it, so it is recorded, not compared; nor can shapes tell
whether the chain is in its training order (each stage's summary.json says what it started from).

OUT/model is a Hugging Face model directory with the base's tokenizer and chat template
(`--policy local:OUT/model`, or the `model` of the next stage); OUT/summary.json lists the
chain: each adapter's folder and the sha256 of its weights file.

    kernelpilot train merge --set base=models/smollm2 --set adapters=runs/sft/adapter,runs/rft/adapter \\
        --out runs/merged
    python -m policy_training merge --set base=runs/tiny --set adapters=runs/sft/adapter --out runs/merged

Needs transformers and peft (the `train` extra; trl is not used here).
"""
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from policy_training.config import as_dict
from policy_training.training import (BASE_RECORD, TrainingError, architecture, load_pretrained, require_stack,
                                      save_model, write_summary)

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."                      # PEFT's prefix on a saved adapter's tensor names
SHAPES = {".lora_A.weight": ("in_features", 1), ".lora_B.weight": ("out_features", 0),
          ".lora_magnitude_vector": ("out_features", 0)}    # which side of the layer each tensor's axis matches


@dataclass(frozen=True)
class MergeConfig:
    base: str                                     # the model directory the chain starts from (the first stage's model)
    adapters: tuple[Path, ...]                    # adapter folders (each stage's OUT/adapter), in training order
    out: Path                                     # the merged model goes to OUT/model, the chain to OUT/summary.json

    def check(self) -> str | None:
        return None if self.adapters else "adapters must name at least one adapter folder"


@dataclass(frozen=True)
class Adapter:
    folder: Path
    config: dict                                  # its adapter_config.json
    recorded: dict | None                         # its kernelpilot_base.json, when a stage of ours saved it
    shapes: dict[str, tuple[int, ...]]            # tensor name -> shape, from the weights file's header
    sha256: str                                   # of the weights file


def read_adapter(folder: Path) -> Adapter:
    """The adapter in `folder`; one TrainingError line when it is missing or not a LoRA adapter."""
    from safetensors import safe_open

    if not folder.is_dir():
        raise TrainingError(f"{folder}: no such adapter folder")
    config_file, weights = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    if not config_file.is_file() or not weights.is_file():
        raise TrainingError(f"{folder}: not a PEFT adapter folder (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}; "
                            "a stage trained with peft = lora or dora+rslora writes one as OUT/adapter)")
    config = json.loads(config_file.read_text())
    if config.get("peft_type") != "LORA":
        raise TrainingError(f"{folder}: a {config.get('peft_type')} adapter; only LoRA and DoRA adapters merge here")
    with safe_open(str(weights), "pt") as handle:
        shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    recorded = json.loads((folder / BASE_RECORD).read_text()) if (folder / BASE_RECORD).is_file() else None
    return Adapter(folder, config, recorded, shapes, hashlib.sha256(weights.read_bytes()).hexdigest())


def check_fits(adapter: Adapter, model, base: str) -> None:
    """One TrainingError line when the adapter was trained on a model of another shape than `model`."""
    own = architecture(model.config)
    if adapter.recorded is not None:
        theirs = adapter.recorded.get("architecture", {})
        differ = [f"{key} {theirs[key]} vs {own[key]}" for key in theirs if key in own and theirs[key] != own[key]]
        if differ:
            raise TrainingError(f"{adapter.folder}: an adapter for another model (its base "
                                f"{adapter.recorded.get('base')} vs {base}: {', '.join(differ)})")
    layers = dict(model.named_modules())
    for name, shape in adapter.shapes.items():
        suffix = next((s for s in SHAPES if name.endswith(s)), None)
        if suffix is None:
            continue
        module = name.removeprefix(PREFIX).removesuffix(suffix)
        side, axis = SHAPES[suffix]
        layer = layers.get(module)
        if layer is None or not hasattr(layer, side):
            raise TrainingError(f"{adapter.folder}: an adapter for another model ({module} is not a layer of {base})")
        if shape[axis] != getattr(layer, side):
            raise TrainingError(f"{adapter.folder}: an adapter for another model ({module}: {side} "
                                f"{shape[axis]} in the adapter, {getattr(layer, side)} in {base})")


def merge_chain(model, adapters: list[Adapter], base: str, log=print):
    """`model` with each adapter applied and merged into its weights, in order."""
    from peft import PeftModel

    for adapter in adapters:
        check_fits(adapter, model, base)
        model = PeftModel.from_pretrained(model, str(adapter.folder)).merge_and_unload()
        log(f"merge: {adapter.folder} merged (r {adapter.config.get('r')}, dora {adapter.config.get('use_dora')})")
    return model


def run_merge(config: MergeConfig, log=print) -> dict:
    """Load the base, merge the chain, save OUT/model and OUT/summary.json; the summary."""
    started = time.monotonic()
    require_stack(("transformers", "peft", "safetensors"))
    adapters = [read_adapter(folder) for folder in config.adapters]     # every folder checked before any work
    model, tokenizer = load_pretrained(config.base)
    model = merge_chain(model, adapters, config.base, log)
    config.out.mkdir(parents=True, exist_ok=True)
    saved = save_model(model, tokenizer, config.out, config.base)
    chain = [{"folder": str(a.folder), "weights_sha256": a.sha256, "r": a.config.get("r"),
              "use_dora": a.config.get("use_dora"), "trained_on": (a.recorded or {}).get("base"),
              "peft_base_model_name_or_path": a.config.get("base_model_name_or_path")} for a in adapters]
    return write_summary(config.out, "merge", started, {"base": config.base, "model": str(saved.model),
                                                        "chain": chain, "config": as_dict(config)})


def summary_line(summary: dict) -> str:
    return (f"merge: {len(summary['chain'])} adapter(s) merged into {summary['base']} in order, "
            f"{summary['seconds']} s; model: {summary['model']}")
