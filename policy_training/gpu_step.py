"""One real GRPO step, profiled: the measurement issue 21 asks for on an H100 (for benchmarks/RESULTS.md).

Runs `kernelpilot train grpo` for `--steps` optimizer steps with the evaluator as the reward (the
GPU evaluator in this process, reward protocol, unless `--grader-url` names a grader service or
`--cpu` asks for the interpreter), then prints each step split into generation, grading and the
rest (forward, backward, optimizer update), the peak GPU memory allocated by this process (the
policy's side; the sandboxed candidates' memory is theirs) and graded candidates per minute, as
JSON and as a Markdown table row. `--model tiny` builds the tiny offline model (the CPU check);
on the GPU machine give a real model directory (SmolLM2-135M: `python -m policy_training.smollm2`,
or all of it there with benchmarks/gpu_smollm2.sh).

    python -m policy_training.gpu_step --model tiny --out /tmp/step --cpu                 # any machine
    python -m policy_training.gpu_step --model /models/smollm2 --out runs/step \\
        --problems benchmarks/problems --only '0[1-4]_*' --num-generations 8 --max-new-tokens 512

Nothing here is estimated: a figure the run did not measure is printed as "not measured".
"""
import argparse
import json
import sys
from pathlib import Path

from policy_training.grpo import PROFILE, GRPOStageConfig, LossType, run_grpo
from policy_training.sft import Device

SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "problems"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m policy_training.gpu_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model directory, or 'tiny' (built under OUT/tiny)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--problems", type=Path, nargs="+", default=[SUITE])
    parser.add_argument("--only", default="04_softmax_rows", help="comma-separated globs over problem names")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--loss-type", type=LossType, default=LossType.DAPO, choices=list(LossType))
    parser.add_argument("--peft", default="none", choices=["none", "lora", "dora+rslora"])
    parser.add_argument("--seeds", type=int, default=0, help="guidance kernels from the store per group")
    parser.add_argument("--grader-url", default=None, help="grade through this grader service instead")
    parser.add_argument("--db", default=None, help="history store URL (default: $KERNELPILOT_HOME/history.db)")
    parser.add_argument("--cpu", action="store_true", help="policy and grading on the CPU (the interpreter)")
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace, model: str) -> GRPOStageConfig:
    from policy_training.config import PeftChoice

    return GRPOStageConfig(
        model=model, out=args.out / "grpo", problems=tuple(args.problems), only=tuple(args.only.split(",")),
        max_steps=args.steps, num_generations=args.num_generations, prompts_per_step=args.prompts_per_step,
        max_new_tokens=args.max_new_tokens, loss_type=args.loss_type, peft=PeftChoice(args.peft), seeds=args.seeds,
        grader_url=args.grader_url, db=args.db, cpu=args.cpu, device=Device.CPU if args.cpu else Device.AUTO,
        bf16=not args.cpu, learning_rate=1e-6)


def table_row(summary: dict, profile: dict) -> str:
    """| device | model | group | step s | generation | grading | update | peak GPU GiB | graded/min |"""
    mean, peak = profile.get("mean", {}), profile.get("peak", {})
    gpu = peak.get("peak_gpu_allocated_bytes")
    config = summary["config"]
    devices = summary["devices"]
    cells = [f"policy {devices['policy']}, grader {devices['grader']} ({devices['grader_mode']})", Path(config["model"]).name,
             f"{config['num_generations']} x {config['prompts_per_step']}, {config['max_new_tokens']} tok",
             *(f"{mean[k]:.2f}" if k in mean else "not measured" for k in ("step_s", "generation_s", "grading_s",
                                                                          "update_s")),
             f"{gpu / 1024**3:.2f}" if gpu else "not measured",
             f"{profile['graded_per_minute']:.1f}" if profile.get("graded_per_minute") else "not measured"]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    model = args.model
    if model == "tiny":
        from policy_training.tiny import build_tiny

        model = str(build_tiny(args.out / "tiny"))
    summary = run_grpo(config_of(args, model), log=lambda line: print(line, file=sys.stderr, flush=True))
    profile = json.loads((args.out / "grpo" / PROFILE).read_text())
    print(json.dumps({"summary": {k: v for k, v in summary.items() if k != "config"}, "profile": profile}, indent=1))
    print("| device | model | group | step s | generation s | grading s | update s | peak GPU GiB | graded/min |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(table_row(summary, profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
