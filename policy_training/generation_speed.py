"""Milliseconds a generated token with the dynamic KV cache and with the static one (which lets
transformers compile the decoding step on a GPU), on the agent's own prompts for a folder of
problems: the measurement that decides `static_cache` for the recipe (issue 22).

One greedy generate call per run, every answer forced to the same length (min_new_tokens), so the
runs decode the same number of steps: dynamic, then static twice (the first pays the compile).
Prints a Markdown table and writes OUT (JSON): seconds, ms a decoding step, tokens a second, and
the share of answers whose tokens equal the dynamic run's (bf16 on a GPU may differ in places).

    python -m policy_training.generation_speed --model models/smollm2 --problems runs/recipe/heldout \\
        --batch 48 --new-tokens 512 --out speed.json
"""
import argparse
import json
import sys
import time
from pathlib import Path

from agent.policy import Backend
from agent.prompts import build_messages
from policy_training.training import TrainingError, load_pretrained
from tools.device import detect
from tools.problems import load_problem


def prompts(folder: Path, batch: int) -> list[list[dict]]:
    files = sorted(folder.glob("*.py"))
    if not files:
        raise TrainingError(f"{folder}: no problem files")
    device = detect()
    messages = [build_messages(load_problem(f), Backend.TRITON, device, []) for f in files]
    return [messages[i % len(messages)] for i in range(batch)]


def timed_run(model, tokenizer, batch: list[list[dict]], new_tokens: int, static: bool) -> tuple[float, list]:
    import torch

    from policy_training.sampling import sample_batch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    model.generation_config.min_new_tokens = new_tokens      # every answer decodes the same number of steps
    drawn = sample_batch(model, tokenizer, batch, 1, new_tokens, 0.0, static_cache=static)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, [d[0].ids for d in drawn]


def measure(model_dir: str, folder: Path, batch: int, new_tokens: int, bf16: bool) -> list[dict]:
    import torch

    model, tokenizer = load_pretrained(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device, dtype=torch.bfloat16 if bf16 and device == "cuda" else torch.float32).eval()
    batch_prompts = prompts(folder, batch)
    rows, reference = [], None
    for label, static in (("dynamic", False), ("static, first (compiles)", True), ("static, second", True)):
        seconds, ids = timed_run(model, tokenizer, batch_prompts, new_tokens, static)
        reference = reference or ids
        same = sum(a == b for a, b in zip(ids, reference)) / len(ids)
        rows.append({"run": label, "seconds": round(seconds, 2), "ms_per_step": round(1000 * seconds / new_tokens, 2),
                     "tokens_per_s": round(batch * new_tokens / seconds), "same_as_dynamic": same,
                     "batch": batch, "new_tokens": new_tokens, "device": device})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| run | seconds | ms a decoding step | tokens a second | answers as the dynamic run's |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['seconds']} | {r['ms_per_step']} | {r['tokens_per_s']} | {r['same_as_dynamic']:.0%} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m policy_training.generation_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model directory")
    p.add_argument("--problems", type=Path, required=True, help="a folder of KernelBench-format problems")
    p.add_argument("--batch", type=int, default=48, help="prompts in the generate call (default 48)")
    p.add_argument("--new-tokens", type=int, default=512, help="tokens every answer decodes (default 512)")
    p.add_argument("--no-bf16", action="store_true", help="float32 on the GPU too")
    p.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = p.parse_args(argv)
    try:
        rows = measure(args.model, args.problems, args.batch, args.new_tokens, not args.no_bf16)
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
