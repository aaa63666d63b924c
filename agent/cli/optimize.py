"""`kernelpilot optimize PROBLEM.py`: run the agent on one problem and write what it found.

    kernelpilot optimize model.py [--policy builtin|openai|replay:FILE] [--model M] [--base-url URL]
                         [--max-turns N] [--target-speedup X] [--backend triton|cuda]
                         [--sandbox process|docker] [--out DIR] [--json] [--resume ID]

Each turn streams to the terminal (the analysis, each tool's result, the best so far); then
the final check evaluates the answer again at a second size set (agent/final_check.py: a
kernel that only holds at the problem's sizes is not handed back); `--out` gets best.py,
report.md and summary.json. With `--json`, stdout carries exactly
one JSON object (the summary) and the stream goes to stderr. Exit codes: agent/cli/__init__.py.
"""
import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from agent.cli.common import EXIT_STATUS_HELP, ExitCode, UsageError, positive_float, positive_int
from agent.cli.sessions import add_session_arguments, clip, drive, session_options
from agent.final_check import run_final_check
from agent.graph import Budget, RunMode
from agent.report import closing_line, write_outputs
from agent.policies import PolicyKind, PolicySpec
from agent.session import SessionOptions, open_session


def add_arguments(op: argparse.ArgumentParser) -> None:
    op.description = ("Run the agent on PROBLEM (a KernelBench-format file): each turn the policy writes a "
                      "performance analysis, then proposes kernels that are compiled, checked and timed in the "
                      "sandbox. The fastest correct kernel, a Markdown report and a JSON summary go to --out.")
    op.epilog = ("Policies: builtin (no LLM needed), openai (any OpenAI-compatible endpoint: --base-url, --model, "
                 "OPENAI_API_KEY), replay:FILE (scripted turns), local:MODEL_DIR (a `kernelpilot train` model directory "
                 "run in-process with transformers; the train extra). Without --policy: openai when an endpoint is "
                 "configured (OPENAI_BASE_URL / KERNELPILOT_MODEL / $KERNELPILOT_HOME/config.toml), else builtin. "
                 + EXIT_STATUS_HELP)
    op.add_argument("problem", type=Path, nargs="?", help="KernelBench-format problem file (omit with --resume)")
    add_session_arguments(op)
    op.add_argument("--max-turns", type=positive_int, default=10, help="policy turns at most (default 10)")
    op.add_argument("--target-speedup", type=positive_float, help="stop once a correct kernel is this much faster than eager")
    op.add_argument("--max-gpu-seconds", type=positive_float, help="stop after this many seconds of evaluation and profiling on the GPU")
    op.add_argument("--max-tokens", type=positive_int, help="stop after the policy has used this many tokens")
    op.add_argument("--patience", type=positive_int, help="stop after N turns without a better kernel "
                    "(default 5 for LLM policies; off for builtin, whose search has its own budget)")
    op.add_argument("--timeout", type=positive_float, help="wall-clock limit in seconds per evaluation step")
    op.add_argument("--out", type=Path, help="folder for best.py, report.md, summary.json (default kernelpilot-out/SESSION)")
    op.add_argument("--json", action="store_true", help="print exactly one JSON object (the summary) on stdout")


def options_from(args) -> SessionOptions:
    policy = PolicySpec.parse(args.policy, args.model, args.base_url)
    patience = args.patience if args.patience else (None if policy.kind is PolicyKind.BUILTIN else 5)
    budget = Budget(max_turns=args.max_turns, target_speedup=args.target_speedup, max_gpu_seconds=args.max_gpu_seconds,
                    max_tokens=args.max_tokens, patience=patience)
    return session_options(args, args.problem, policy, RunMode.OPTIMIZE, budget, args.timeout)


def run(args) -> ExitCode:
    if (args.problem is None) == (args.resume is None):
        raise UsageError("name a PROBLEM file, or --resume SESSION (not both: a resumed session keeps its problem)")
    if args.resume and (args.policy or args.model or args.base_url):
        raise UsageError("a resumed session keeps its policy: drop --policy, --model and --base-url")
    console = Console(file=sys.stderr if args.json else sys.stdout, soft_wrap=True, highlight=False)
    with open_session(options_from(args)) as session:
        console.print(f"[bold]session {session.id}[/]: {session.context.toolbox.problem.name} on "
                      f"{session.context.device.name}, policy {session.context.policy.name}")
        out = args.out or Path("kernelpilot-out") / session.id
        try:
            drive(session, session.start_state(), console)
            for check in run_final_check(session):
                console.rule("final check")
                console.print(clip(f"{check.status.value}{', flagged ' + ', '.join(check.flags) if check.flags else ''}"
                                   f"; {check.second_size or 'not checked at a second size'}"), markup=False)
        finally:
            # Whatever stopped the run (the endpoint gone, Ctrl-C), what it found is written out.
            summary = write_outputs(out, session.state(), session.id, session.context.device)
    if args.json:
        print(json.dumps(summary.as_dict()))
    else:
        console.print(f"{closing_line(summary)}; report in {out / 'report.md'}", markup=False)
    return ExitCode.OK
