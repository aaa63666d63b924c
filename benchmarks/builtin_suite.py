"""Run the built-in policy on our suite on a GPU: each problem at full size, the policy's
turns driven to the end with the evaluator doing each tool call, then a Markdown table.

    python -m benchmarks.builtin_suite --out DIR [--only 'GLOB'] [--budget 3]

It drives the evaluator directly (no tools/toolbox.py, no history store: the GPU image
has no sqlalchemy): `benchmark` and `check_correctness` are evaluations, `submit` is a
final evaluation accepted only when correct. Writes DIR/builtin.jsonl, one line per
problem, flushed as it goes, so a stopped run keeps what it measured.
"""
import argparse
import fnmatch
import os
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from agent.builtin import BuiltinPolicy
from agent.policy import Attempt, Backend, TurnInput
from benchmarks.suite import PROBLEMS
import torch

from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.problems import load_problem
from tools.records import EvalStatus
from tools.sandbox.process import ProcessSandbox

MAX_TURNS = 16


@dataclass(frozen=True)
class Outcome:
    name: str
    supported: bool
    evaluations: int
    best_correct: Attempt | None        # the fastest correct kernel measured
    submitted: Attempt | None           # the accepted answer, if any
    seconds: float


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", default="*", help="comma-separated globs over problem names")
    parser.add_argument("--budget", type=int, default=3, help="benchmarks per problem")
    parser.add_argument("--size", default="full", choices=("full", "small"))
    parser.add_argument("--smoke", action="store_true",
                        help="no sandbox: run each default kernel in this process, check it and time it roughly")
    args = parser.parse_args()
    if args.smoke:
        return smoke(args)
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")   # is_available() must not poison the fork server
    if not torch.cuda.is_available():
        print("builtin_suite: no CUDA GPU here; timings need one (nothing measured)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    files = [p for p in sorted(PROBLEMS.glob("*.py")) if any(fnmatch.fnmatch(p.stem, g) for g in args.only.split(","))]
    policy = BuiltinPolicy(budget=args.budget)
    with ProcessSandbox(0) as sandbox, open(args.out / "builtin.jsonl", "a") as log:
        sandbox.worker().close()    # start the fork server before this process initialises CUDA
        device = detect()
        evaluator = Evaluator(sandbox, device, EvalConfig())
        outcomes = [run_one(policy, evaluator, device, load_problem(f, size=args.size), log) for f in files]
    print(table(outcomes, device.name))
    return 0


def run_one(policy: BuiltinPolicy, evaluator: Evaluator, device, problem, log) -> Outcome:
    start, attempts = time.perf_counter(), []
    for index in range(MAX_TURNS):
        turn = policy.turn(TurnInput(problem, Backend.TRITON, device, [], [], list(attempts), index))
        if not turn.tool_calls:
            break
        for call in turn.tool_calls:
            code = json.loads(call.arguments)["code"]
            config = replace(evaluator.config, timed=call.name in ("benchmark", "submit"))
            r = evaluator.evaluate(problem, code, config)
            attempts.append(Attempt(index, call.name, len(attempts), code, r.status, r.runtime_ms, r.speedup_vs_eager,
                                    r.speedup_vs_compile, tuple(f.value for f in r.flags), r.reason))
            print(f"  {problem.name} {call.name}: {r.status.value} {r.runtime_ms} ms, {r.speedup_vs_eager}x eager, "
                  f"{r.speedup_vs_compile}x compile {r.reason[:200]}", flush=True)
    correct = [a for a in attempts if a.status is EvalStatus.CORRECT and a.runtime_ms is not None]
    best = min(correct, key=lambda a: a.runtime_ms) if correct else None
    submitted = next((a for a in attempts if a.tool == "submit" and a.status is EvalStatus.CORRECT), None)
    outcome = Outcome(problem.name, policy.plan(problem).error is None, len(attempts), best, submitted,
                      time.perf_counter() - start)
    log.write(json.dumps({"name": problem.name, "supported": outcome.supported, "evaluations": len(attempts),
                          "best_ms": best.runtime_ms if best else None,
                          "best_vs_eager": best.speedup_vs_eager if best else None,
                          "best_vs_compile": best.speedup_vs_compile if best else None,
                          "submitted_vs_eager": submitted.speedup_vs_eager if submitted else None,
                          "submitted_vs_compile": submitted.speedup_vs_compile if submitted else None,
                          "unsupported": policy.plan(problem).error, "seconds": outcome.seconds}) + "\n")
    log.flush()
    print(f"{problem.name}: {len(attempts)} evaluations, {outcome.seconds:.0f} s", flush=True)
    return outcome


def table(outcomes: list[Outcome], device: str) -> str:
    lines = [f"Device: {device}", "", "| problem | evals | best vs eager | best vs compile | answer (vs eager) |",
             "|---|---|---|---|---|"]
    for o in outcomes:
        best = o.best_correct
        answer = f"{o.submitted.speedup_vs_eager:.2f}x" if o.submitted and o.submitted.speedup_vs_eager else \
            ("unsupported" if not o.supported else "none (nothing beat eager)")
        lines.append(f"| {o.name} | {o.evaluations} | {fmt(best and best.speedup_vs_eager)} | "
                     f"{fmt(best and best.speedup_vs_compile)} | {answer} |")
    correct = [o.best_correct for o in outcomes if o.best_correct]
    n = len(outcomes)
    eager = [a.speedup_vs_eager for a in correct if a.speedup_vs_eager]
    compiled = [a.speedup_vs_compile for a in correct if a.speedup_vs_compile]
    lines += ["", f"correct kernel on {len(correct)}/{n}; fast_1 vs eager {sum(s > 1 for s in eager)}/{n}, "
                  f"vs torch.compile {sum(s > 1 for s in compiled)}/{n}; geomean of the best correct kernels: "
                  f"{fmt(eager and statistics.geometric_mean(eager))}x vs eager, "
                  f"{fmt(compiled and statistics.geometric_mean(compiled))}x vs torch.compile"]
    return "\n".join(lines)


def smoke(args) -> int:
    """A development check when the sandbox cannot run: each problem's first kernel
    (and its CUDA-graph variant where the plan offers one) exec'd here, compared with the
    reference at fp32 tolerance on one input, and timed with triton.testing.do_bench
    against eager and torch.compile. Not the evaluator's protocol: no isolation, one
    input set, no anti-cheat; numbers are labelled as smoke timings."""
    import triton.testing
    from agent.builtin.search import space_for
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    policy, rows = BuiltinPolicy(), []
    for f in sorted(PROBLEMS.glob("*.py")):
        if not any(fnmatch.fnmatch(f.stem, g) for g in args.only.split(",")):
            continue
        problem = load_problem(f, size=args.size)
        plan = policy.plan(problem)
        if plan.error:
            rows.append(f"| {problem.name} | unsupported | - | - | - |")
            continue
        space = space_for(list(plan.stages), plan.graph, True, problem.category == "model")
        configs = [space.start] + ([replace(space.start, cuda_graph=True)] if "cuda_graph" in space.axes else [])
        torch.manual_seed(1)
        inputs = [x.cuda() for x in problem.draw_inputs()]
        reference = problem.build_model().cuda()
        with torch.no_grad():
            expected = reference(*inputs)
            eager = triton.testing.do_bench(lambda: reference(*inputs))
            compiled_model = torch.compile(reference)
            compiled = triton.testing.do_bench(lambda: compiled_model(*inputs))
            for config in configs:
                rows.append(smoke_row(problem, policy.source(problem, config), inputs, expected, eager, compiled,
                                      "graph" if config.cuda_graph else "plain"))
                print(rows[-1], flush=True)
        del inputs, reference, expected
        torch.cuda.empty_cache()
    print("\n".join(["| problem | variant | ok | vs eager | vs compile |", "|---|---|---|---|---|"] + rows))
    return 0


def smoke_row(problem, source, inputs, expected, eager_ms, compile_ms, variant) -> str:
    import triton.testing
    import importlib.util
    import tempfile
    path = Path(tempfile.mkdtemp()) / f"builtin_{problem.name}_{variant}.py"    # @triton.jit needs a file
    path.write_text(source)
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        init = problem.init_inputs()
        torch.manual_seed(42)
        model = module.ModelNew(*init).cuda()
        got = model(*inputs)
        torch.cuda.synchronize()
    except Exception as error:  # a development check: report and go on
        return f"| {problem.name} | {variant} | error: {type(error).__name__}: {str(error)[:120]} | - | - |"
    if got.dtype.is_floating_point:
        scale = max(1.0, expected.float().pow(2).mean().sqrt().item())
        ok = bool(((got - expected).abs() <= 1e-4 * scale + 1e-4 * expected.abs()).all())
    else:
        ok = bool(torch.equal(got, expected))
    ms = triton.testing.do_bench(lambda: model(*inputs))
    return f"| {problem.name} | {variant} | {ok} | {eager_ms / ms:.2f} | {compile_ms / ms:.2f} |"


def fmt(value) -> str:
    return f"{value:.2f}" if value else "-"


if __name__ == "__main__":
    sys.exit(main())
