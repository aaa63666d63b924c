"""The training stages as commands: one table row per stage (its config class, its run function,
its help), the argparse verbs built from it, and the run. `kernelpilot train STAGE` (agent/cli/
train.py) and `python -m policy_training STAGE` (__main__.py) both use it; a new stage is a new
row. Importing this module imports no training library (each stage imports its own when it runs).

Every stage reads `--config FILE.toml` (a flat table of the stage config's keys) and any number
of `--set key=value` overrides; `--show-config` prints the resolved config and stops; `--json`
prints the stage's summary as one JSON object.

    python -m policy_training export --set out=data/sft --json
"""
import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from policy_training import best_of, collect, evaluate, export, grpo, merge, rft, sft, smoke
from policy_training.config import as_dict, describe, load_config


@dataclass(frozen=True)
class Stage:
    config: type                        # the stage's frozen config dataclass
    run: Callable[..., dict]            # run(config, log) -> the summary
    line: Callable[[dict], str]         # the summary in one line
    help: str
    description: str
    example: str


STAGES: dict[str, Stage] = {
    "collect": Stage(
        collect.CollectConfig, collect.run_collect, collect.summary_line,
        help="run mentors (any policies) through the bench machinery: traces into the history store",
        description="Run each mentor policy over the problems as `kernelpilot bench` does (one agent session per "
                    "problem: graph, tools, sandbox, evaluator), recording every evaluation in the history store and "
                    "every session's messages in the checkpoints. Resumable: finished problems are skipped.",
        example="kernelpilot train collect --set problems=benchmarks/problems --set only=01_*,04_* "
                "--set mentors=builtin --set out=runs/collect --set cpu=true"),
    "export": Stage(
        export.ExportConfig, lambda config, log: export.export(config), export.summary_line,
        help="the best correct trace per problem as SFT rows, split by problem hash",
        description="Join each stored session's evaluations with its checkpointed messages, keep the best correct, "
                    "unflagged trace per problem (several mentors: the best of them), and write SFT rows whose "
                    "prompts are the agent's own (agent/prompts.py): messages/, prompt_completion/ and agent/ "
                    "folders with train.jsonl and held_out.jsonl, trajectories.jsonl and manifest.json.",
        example="kernelpilot train export --set out=data/sft"),
    "sft": Stage(
        sft.SFTConfig, sft.run_sft, sft.summary_line,
        help="supervised fine-tuning on exported rows (TRL SFTTrainer)",
        description="Fine-tune a model directory on an export's rows with TRL's SFTTrainer (full, lora or "
                    "dora+rslora), writing OUT/model (a Hugging Face directory, adapters merged: "
                    "--policy local:OUT/model), with PEFT OUT/adapter (the adapter alone; save_merged=false: only "
                    "it), OUT/metrics.jsonl and OUT/summary.json. Needs the train extra.",
        example="kernelpilot train sft --set model=runs/tiny --set data=data/sft --set out=runs/sft --set max_steps=20"),
    "rft": Stage(
        rft.RFTConfig, rft.run_rft, rft.summary_line,
        help="self-supervised rejection sampling: sample, grade, write back, fine-tune on the correct ones",
        description="Sample k completions per training problem from the model (the agent's own prompt), grade each "
                    "with the real evaluator (in-process, or the grader service at grader_url), write every one back "
                    "to the history store (origin: policy rft, the model directory), and fine-tune on the correct, "
                    "unflagged ones with the SFT machinery. seeds=N mixes the store's best correct kernels in. "
                    "Writes OUT/model, OUT/candidates.jsonl, OUT/positives/, OUT/metrics.jsonl, OUT/summary.json.",
        example="kernelpilot train rft --set model=runs/sft/model --set problems=benchmarks/problems "
                "--set only=04_* --set k=8 --set out=runs/rft --set cpu=true"),
    "grpo": Stage(
        grpo.GRPOStageConfig, grpo.run_grpo, grpo.summary_line,
        help="contrastive RL: GRPO with earlier kernels and their speedups in the prompt, the evaluator as reward",
        description="TRL's GRPOTrainer on prompts carrying the store's fast, middling and slow kernels of each "
                    "problem (rendered when sampled, so kernels found in training reach the next prompts), rewarded by "
                    "policy_training/reward.py on the real evaluator's verdict, every graded candidate written back. "
                    "Loss grpo, dr_grpo or dapo; clip-higher; KL on/off; reward scaling; length penalties; difficulty-"
                    "weighted problems; PEFT. Writes OUT/model, OUT/metrics.jsonl, OUT/profile.json (generation, "
                    "grading and update time per step, peak memory, graded candidates per minute), OUT/summary.json.",
        example="kernelpilot train grpo --set model=runs/rft/model --set problems=benchmarks/problems "
                "--set only=04_* --set out=runs/grpo --set max_steps=50 --set loss_type=dapo --set epsilon_high=0.28"),
    "merge": Stage(
        merge.MergeConfig, merge.run_merge, merge.summary_line,
        help="a base model plus a chain of adapters (each stage's OUT/adapter), merged in order into OUT/model",
        description="Load the base model directory, apply each adapter in the order it was trained and merge it into "
                    "the weights before the next (each stage started from the previous one's merged model), and save "
                    "OUT/model (a Hugging Face directory with the base's tokenizer and chat template) and "
                    "OUT/summary.json (the chain: folders and weights sha256). An adapter of another model shape, or "
                    "a folder that is no adapter, is refused in one line. For training in pieces on lent machines: "
                    "ship adapters (save_merged=false), merge on arrival. Needs transformers and peft.",
        example="kernelpilot train merge --set base=models/smollm2 --set adapters=runs/sft/adapter,runs/rft/adapter "
                "--out runs/merged"),
    "smoke": Stage(
        smoke.SmokeConfig, smoke.run_smoke, smoke.summary_line,
        help="every stage once on a tiny random model and two suite problems, on a CPU (a few minutes)",
        description="collect -> export -> sft -> rft -> grpo on a tiny offline model and two suite problems in the "
                    "Triton interpreter, with a store and home of the run's own under OUT; OUT/summary.json holds each "
                    "stage's metrics and the candidates each wrote back to the store.",
        example="kernelpilot train smoke --out runs/smoke"),
    "best-of": Stage(
        best_of.BestOfConfig, best_of.run_best_of, best_of.summary_line,
        help="best-of-N at inference: N answers per problem, every kernel graded, the best kept",
        description="A policy (local:MODEL_DIR, openai, replay:FILE, builtin) answers each problem's first turn N "
                    "times; the evaluator grades every kernel (written back to the store) and the best verdict wins. "
                    "prm=module:function names an optional process scorer of the answers' analyses (ranks them, "
                    "keeps the prm_keep best for grading, breaks ties). Writes OUT/best_of.jsonl and OUT/summary.json.",
        example="kernelpilot train best-of --set policy=local:runs/grpo/model --set problems=benchmarks/problems "
                "--set n=8 --out runs/best-of"),
    "evaluate": Stage(
        evaluate.EvaluateConfig, evaluate.run_evaluate, evaluate.summary_line,
        help="a model measured on held-out problems: compiles, correct, fast_1, geomean, tokens per answer",
        description="Render the agent's own prompt for each problem (a problem_set's held_out split by default), "
                    "sample k completions (greedy by default; batch_size prompts per generate call), grade each "
                    "with the real evaluator (in-process with the full protocol, or the grader service at grader_url) "
                    "and record it in the history store (origin: policy evaluate, the model; record=false: not). "
                    "Writes OUT/rows.jsonl (one row per sample, appended as graded: rerunning resumes), OUT/run.json "
                    "and OUT/summary.json (compiles, correct, fast_1 vs eager and torch.compile, geomean speedup, "
                    "mean completion tokens; speed 'not measured' in the interpreter).",
        example="kernelpilot train evaluate --set model=runs/rft/model --set problem_set=train_problems/manifest.json "
                "--set max_new_tokens=1024 --out runs/eval-rft"),
}


def add_stage_parsers(verbs) -> None:
    """One subcommand per stage on `verbs` (an argparse subparsers action)."""
    for name, stage in STAGES.items():
        parser = verbs.add_parser(name, help=stage.help, description=stage.description,
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog=f"config keys (TOML or --set; paths are relative to the working folder):\n"
                                         f"{describe(stage.config)}\n\nexample:\n  {stage.example}")
        parser.add_argument("--config", type=Path, metavar="FILE.toml", help="a TOML file with the stage's keys")
        parser.add_argument("--out", type=Path, metavar="DIR", help="the stage's folder (the same as --set out=DIR)")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                            help="set one key (after the file); repeat for more; lists are comma-separated")
        parser.add_argument("--show-config", action="store_true", help="print the resolved config as JSON and stop")
        parser.add_argument("--json", action="store_true", help="print the stage's summary as one JSON object")


def run_stage(name: str, args) -> dict | None:
    """Resolve the config and run the stage; the summary (None with --show-config). Progress lines
    go to stderr; ConfigError, TrainingError and the runtime's errors propagate."""
    stage = STAGES[name]
    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out is not None else [])
    config = load_config(stage.config, args.config, overrides)
    if args.show_config:
        print(json.dumps(as_dict(config), indent=1))
        return None
    summary = stage.run(config, log=_stderr)
    print(json.dumps(summary) if args.json else stage.line(summary))
    return summary


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
