"""Run the built-in policy on a GPU over our suite or a KernelBench checkout: each problem
at full size, the policy's turns driven to the end with the evaluator doing each tool
call, then a Markdown table per level.

    python -m benchmarks.builtin_suite --out DIR [--only 'GLOB'] [--budget 3]
    python -m benchmarks.builtin_suite --out DIR --problems ~/KernelBench --levels 1,2 \
        --budget 1 --warm 6 --deadline 540          # run again to go on where it stopped
    python -m benchmarks.builtin_suite --out DIR --problems ~/KernelBench --levels 1,2 --report
    python -m benchmarks.builtin_suite --out DIR --problems ~/KernelBench --levels 2 --cpu --size small

It drives the evaluator directly (no tools/toolbox.py, no history store: the GPU image
has no sqlalchemy): `benchmark` and `check_correctness` are evaluations, `submit` is a
final evaluation accepted only when correct. Writes DIR/builtin.jsonl, one line per
problem, flushed as it goes, so a stopped run keeps what it measured and a second run
skips the problems already there. `--warm N` first compiles, in N processes, each
supported problem's torch.compile baseline and first kernel into the sandbox's shared
Triton and Inductor caches, so the measured pass does not pay single-threaded compiles.
The table counts every problem of the selection: one not run, unsupported or without a
correct kernel is a failure, as KernelBench's fast_p counts it.

`--cpu` needs no GPU: each supported problem's first kernel goes through the evaluator in
the Triton interpreter (correctness only, no timings), written to DIR/cpu.jsonl; with
`--size small`, KernelBench problems are shrunk by `benchmarks/small_sizes.py`. `--check`
does the same on the GPU at full size (DIR/check.jsonl, resumable): the share of problems
with a correct kernel costs a few seconds a problem, since nothing is timed.
"""
import argparse
import fnmatch
import hashlib
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from agent.builtin import BuiltinPolicy
from agent.builtin.search import default_config
from agent.policy import Attempt, Backend, TurnInput
from benchmarks.suite import PROBLEMS
import torch

from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.problems import ProblemFile, find_problem_files, load_problem
from tools.records import EvalStatus
from tools.timing import TimingConfig
from tools.sandbox.process import ProcessSandbox, cache_dir

MAX_TURNS = 16


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--problems", type=Path, default=PROBLEMS,
                        help="a problem file, a folder of them, or a KernelBench checkout (default: our suite)")
    parser.add_argument("--levels", default="", help="KernelBench levels to run, e.g. 1,2 (default: every one found)")
    parser.add_argument("--only", default="*", help="comma-separated globs over problem names")
    parser.add_argument("--budget", type=int, default=3, help="benchmarks per problem")
    parser.add_argument("--size", default="full", choices=("full", "small"))
    parser.add_argument("--deadline", type=float, default=None,
                        help="start no problem after this many seconds; run again to go on")
    parser.add_argument("--warm", type=int, default=0, metavar="N",
                        help="processes that fill the compile caches before measuring (0: none)")
    parser.add_argument("--trials", type=int, default=EvalConfig.trials, help="correctness trials per evaluation")
    parser.add_argument("--iters", type=int, default=TimingConfig.iters, help="timed calls per measurement")
    parser.add_argument("--no-submit", action="store_true",
                        help="stop each problem at the policy's submit (the final check is not run)")
    parser.add_argument("--report", action="store_true", help="print the tables from DIR/builtin.jsonl; no GPU")
    parser.add_argument("--cpu", action="store_true",
                        help="no GPU: check each first kernel in the Triton interpreter (correctness only)")
    parser.add_argument("--check", action="store_true",
                        help="on the GPU, correctness only: each first kernel checked, nothing timed, no baselines "
                             "(DIR/check.jsonl; run again to go on)")
    parser.add_argument("--smoke", action="store_true",
                        help="no sandbox: run each default kernel in this process, check it and time it roughly")
    args = parser.parse_args()
    files = selected(args)
    if args.smoke:
        return smoke(args, files)
    if args.report:
        print(report(read_log(args.out / "builtin.jsonl"), files))
        if (args.out / "check.jsonl").exists():
            print(check_report(read_log(args.out / "check.jsonl"), files))
        return 0
    if args.cpu and args.check:
        parser.error("--cpu (the interpreter) and --check (the GPU) exclude each other")
    if args.cpu or args.check:
        return check(args, files, gpu=args.check)
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")   # is_available() must not poison the fork server
    if not torch.cuda.is_available():
        print("builtin_suite: no CUDA GPU here; timings need one (nothing measured)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    done = {(row["level"], row["name"]) for row in read_log(args.out / "builtin.jsonl")}
    todo = [f for f in files if (f.level, f.path.stem) not in done]
    policy, start = BuiltinPolicy(budget=args.budget), time.perf_counter()
    if args.warm:
        warm_caches(todo, args.size, args.warm)
    with ProcessSandbox(0) as sandbox, open(args.out / "builtin.jsonl", "a") as log:
        sandbox.worker().close()    # start the fork server before this process initialises CUDA
        device = detect()
        evaluator = Evaluator(sandbox, device, EvalConfig(trials=args.trials,
                                                          timing=TimingConfig(iters=args.iters)))
        for f in todo:
            if args.deadline is not None and time.perf_counter() - start > args.deadline:
                print(f"builtin_suite: deadline reached, {len(todo) - todo.index(f)} problem(s) left for the next run")
                break
            try:
                run_one(policy, evaluator, load_problem(f.path, size=args.size, suite=f.suite, level=f.level), log,
                        submit=not args.no_submit)
            except Exception as error:  # the trusted side failed on this problem: logged as failed, the batch goes on
                log_failure(log, f, error)
    print(report(read_log(args.out / "builtin.jsonl"), files, device.name))
    return 0


def check(args, files: list[ProblemFile], gpu: bool) -> int:
    """The first kernel of each supported problem through the evaluator, correctness only:
    in the interpreter, or on the GPU (compiled, full size, skipping problems already logged)."""
    from benchmarks.small_sizes import shrink
    args.out.mkdir(parents=True, exist_ok=True)
    policy, counts, start = BuiltinPolicy(), {}, time.perf_counter()
    path = args.out / ("check.jsonl" if gpu else "cpu.jsonl")
    if gpu:
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        done = {(row["level"], row["name"], row.get("size")) for row in read_log(path)}
        files = [f for f in files if (f.level, f.path.stem, args.size) not in done]
    with ProcessSandbox(0 if gpu else None) as sandbox, open(path, "a") as log:
        if gpu:
            sandbox.worker().close()    # start the fork server before this process initialises CUDA
        evaluator = Evaluator(sandbox, detect(force_cpu=not gpu), EvalConfig(trials=args.trials, timed=False))
        for f in progress(files):
            if args.deadline is not None and time.perf_counter() - start > args.deadline:
                print(f"builtin_suite: deadline reached, {len(files) - files.index(f)} problem(s) left")
                break
            row = {"level": f.level, "name": f.path.stem, "size": args.size}
            try:
                problem = load_problem(f.path, size="full" if f.suite == "kernelbench" else args.size,
                                       suite=f.suite, level=f.level)
                problem = shrink(problem) if f.suite == "kernelbench" and args.size == "small" else problem
                plan = policy.plan(problem)
            except Exception as error:   # a problem the shrink broke: reported, not scored
                plan, row["status"] = None, f"not loadable: {type(error).__name__}: {str(error)[:200]}"
            if plan is not None and plan.error:
                row.update(status="unsupported", reason=plan.error[:300])
            elif plan is not None:
                r = evaluator.evaluate(problem, policy.source(problem, default_config(list(plan.stages), plan.graph)))
                row.update(status=r.status.value, flags=[x.value for x in r.flags], reason=r.reason[:300])
            log.write(json.dumps(row) + "\n")
            log.flush()
            key = row["status"].split(":")[0]
            counts[key] = counts.get(key, 0) + 1
            print(f"{f.path.stem}: {row['status']} {row.get('reason', '')[:160]}", flush=True)
    print(f"{len(files)} problem(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


def progress(items: list):
    for index, item in enumerate(items, 1):
        print(f"[{index}/{len(items)}] ", end="", flush=True)
        yield item


def selected(args) -> list[ProblemFile]:
    levels = {int(v) for v in args.levels.split(",") if v}
    return [f for f in find_problem_files(args.problems)
            if (not levels or f.level in levels) and any(fnmatch.fnmatch(f.path.stem, g) for g in args.only.split(","))]


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def warm_caches(files: list[ProblemFile], size: str, processes: int) -> None:
    """Compile each problem's torch.compile baseline and first kernel in `processes`
    processes (spawned, each on the GPU) into the caches the sandbox's children share.
    Our own generated kernels run here, outside the sandbox; no timing is taken."""
    import multiprocessing
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        notes = pool.map(_warm_one, [(f.path, size, f.suite, f.level) for f in files], chunksize=1)
    failed = [n for n in notes if n]
    print(f"warmed the caches for {len(files)} problem(s) in {time.perf_counter() - start:.0f} s"
          + (f"; {len(failed)} could not be warmed: " + "; ".join(failed)[:2000] if failed else ""), flush=True)


def _warm_one(task) -> str:
    path, size, suite, level = task
    os.environ.update(TRITON_CACHE_DIR=str(cache_dir() / "triton"), TORCHINDUCTOR_CACHE_DIR=str(cache_dir() / "inductor"),
                      TORCHINDUCTOR_COMPILE_THREADS="1")        # as in the sandbox, so the cache keys match
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        problem = load_problem(path, size=size, suite=suite, level=level)
        policy = BuiltinPolicy()
        plan = policy.plan(problem)
        if plan.error:
            return ""
        inputs = [x.cuda() if isinstance(x, torch.Tensor) else x for x in problem.draw_inputs()]
        with torch.no_grad():
            torch.compile(problem.build_model().cuda())(*inputs)
            first = default_config(list(plan.stages), plan.graph)     # the search's start
            candidate = _exec_source(policy.source(problem, first), f"warm_{path.stem}")
            torch.manual_seed(42)
            candidate.ModelNew(*problem.init_inputs()).cuda()(*inputs)
        torch.cuda.synchronize()
        return ""
    except Exception as error:  # a warm-up failure only costs a cold compile later; the run reports it
        return f"{path.stem}: {type(error).__name__}: {str(error)[:200]}"
    finally:
        torch._dynamo.reset()
        torch.cuda.empty_cache()


def _exec_source(source: str, stem: str):
    import importlib.util
    import tempfile
    path = Path(tempfile.mkdtemp()) / f"{stem}.py"      # @triton.jit needs a file
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_one(policy: BuiltinPolicy, evaluator: Evaluator, problem, log, submit: bool = True) -> None:
    start, attempts = time.perf_counter(), []
    for index in range(MAX_TURNS):
        turn = policy.turn(TurnInput(problem, Backend.TRITON, evaluator.device, [], [], list(attempts), index))
        if not turn.tool_calls or (not submit and any(c.name == "submit" for c in turn.tool_calls)):
            break
        for call in turn.tool_calls:
            code = json.loads(call.arguments)["code"]
            config = replace(evaluator.config, timed=call.name in ("benchmark", "submit"))
            r = evaluator.evaluate(problem, code, config)
            attempts.append(Attempt(index, call.name, len(attempts), code, r.status, r.runtime_ms, r.speedup_vs_eager,
                                    r.speedup_vs_compile, tuple(f.value for f in r.flags), r.reason))
            print(f"  {problem.name} {call.name}: {r.status.value} {r.runtime_ms} ms, {r.speedup_vs_eager}x eager, "
                  f"{r.speedup_vs_compile}x compile {' '.join(f.value for f in r.flags)} {r.reason[:200]}", flush=True)
    correct = [a for a in attempts if a.status is EvalStatus.CORRECT and a.runtime_ms is not None]
    best = min(correct, key=lambda a: a.runtime_ms) if correct else None
    submitted = next((a for a in attempts if a.tool == "submit" and a.status is EvalStatus.CORRECT), None)
    plan = policy.plan(problem)
    row = {"level": problem.level, "name": problem.name, "supported": plan.error is None, "evaluations": len(attempts),
           "statuses": [a.status.value for a in attempts], "best_ms": best.runtime_ms if best else None,
           "best_vs_eager": best.speedup_vs_eager if best else None,
           "best_vs_compile": best.speedup_vs_compile if best else None,
           "best_flags": list(best.flags) if best else [],
           "best_kernel": hashlib.sha256(best.code.encode()).hexdigest()[:16] if best else None,   # which source
           "submitted_vs_eager": submitted.speedup_vs_eager if submitted else None,
           "submitted_vs_compile": submitted.speedup_vs_compile if submitted else None,
           "kept_in_torch": [s.anchor.name for s in plan.stages if s.kind.value == "torch"],
           "unsupported": plan.error, "seconds": round(time.perf_counter() - start, 1)}
    log.write(json.dumps(row) + "\n")
    log.flush()
    held = (f", the trusted process holds {torch.cuda.memory_reserved() / 2**30:.1f} GiB of GPU memory and "
            f"{evaluator.exchange.held_bytes / 2**30:.1f} GiB in arenas" if torch.cuda.is_initialized() else "")
    print(f"{problem.name}: {len(attempts)} evaluations, {row['seconds']:.0f} s{held}", flush=True)


def log_failure(log, f: ProblemFile, error: Exception) -> None:
    """A row for a problem the run could not finish (e.g. the trusted side ran out of GPU
    memory): no kernel counts for it, and the reason is kept for the report."""
    reason = f"{type(error).__name__}: {str(error)[:300]}"
    row = {"level": f.level, "name": f.path.stem, "supported": True, "evaluations": 0, "statuses": [],
           "best_ms": None, "best_vs_eager": None, "best_vs_compile": None, "best_flags": [], "best_kernel": None,
           "submitted_vs_eager": None, "submitted_vs_compile": None, "kept_in_torch": [], "unsupported": None,
           "error": reason, "seconds": None}
    log.write(json.dumps(row) + "\n")
    log.flush()
    print(f"{f.path.stem}: the run failed: {reason}", flush=True)
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def report(rows: list[dict], files: list[ProblemFile], device: str = "") -> str:
    """One table per level over every selected problem, then its summary line."""
    by_key = {(r["level"], r["name"]): r for r in rows}
    parts = [f"Device: {device}" if device else "From the run's log."]
    for level in sorted({f.level for f in files}, key=lambda v: (v is None, v)):
        chosen = [f for f in files if f.level == level]
        lines = ["", f"Level {level}" if level is not None else "Suite",
                 "| problem | evals | best vs eager | best vs compile | answer (vs eager) | note |", "|---|---|---|---|---|---|"]
        for f in chosen:
            r = by_key.get((level, f.path.stem))
            lines.append(_row(f.path.stem, r))
        parts += lines + ["", summary([by_key.get((level, f.path.stem)) for f in chosen])]
    return "\n".join(parts)


def check_report(rows: list[dict], files: list[ProblemFile]) -> str:
    """The `--check` log (correctness only, no timing): one table per level, then a count."""
    by_key = {(r["level"], r["name"]): r for r in rows}
    parts = ["", "Correctness check (first kernel, nothing timed)"]
    for level in sorted({f.level for f in files}, key=lambda v: (v is None, v)):
        chosen = [by_key.get((level, f.path.stem)) for f in files if f.level == level]
        if not any(chosen):
            continue
        lines = ["", f"Level {level}" if level is not None else "Suite", "| problem | status | flags | reason |",
                 "|---|---|---|---|"]
        for f, r in zip([f for f in files if f.level == level], chosen):
            status = r["status"] if r else "not run"
            lines.append(f"| {f.path.stem} | {status[:90]} | {', '.join((r or {}).get('flags') or [])} | "
                         f"{(r or {}).get('reason', '')[:90]} |")
        correct = sum(1 for r in chosen if r and r["status"] == "correct")
        parts += lines + ["", f"{sum(1 for r in chosen if r)}/{len(chosen)} checked; a correct kernel on "
                              f"{correct}/{len(chosen)} ({correct / max(len(chosen), 1):.0%})"]
    return "\n".join(parts)


def _row(name: str, r: dict | None) -> str:
    if r is None:
        return f"| {name} | - | - | - | - | not run |"
    if not r["supported"]:
        return f"| {name} | 0 | - | - | - | unsupported: {r['unsupported'][:90]} |"
    answer = f"{r['submitted_vs_eager']:.2f}x" if r["submitted_vs_eager"] else "none"
    note = ", ".join(r.get("best_flags") or []) or ("" if r["best_ms"] else "no correct kernel: "
                                                    + (r.get("error") or ",".join(r.get("statuses") or []))[:120])
    kept = r.get("kept_in_torch") or []
    note += (f"; kept in PyTorch: {', '.join(kept)}" if kept else "")
    return (f"| {name} | {r['evaluations']} | {fmt(r['best_vs_eager'])} | {fmt(r['best_vs_compile'])} | "
            f"{answer} | {note.strip('; ')} |")


def summary(rows: list[dict | None]) -> str:
    n = len(rows)
    correct = [r for r in rows if r and r["best_ms"] is not None and "no_custom_kernel" not in (r.get("best_flags") or [])]
    eager = [r["best_vs_eager"] for r in correct if r["best_vs_eager"]]
    compiled = [r["best_vs_compile"] for r in correct if r["best_vs_compile"]]
    run = sum(1 for r in rows if r)
    return (f"{run}/{n} run; correct kernel on {len(correct)}/{n} ({len(correct) / max(n, 1):.0%}); "
            f"fast_1 vs eager {sum(s > 1 for s in eager)}/{n}, vs torch.compile {sum(s > 1 for s in compiled)}/{n}; "
            f"geomean of the best correct kernels {fmt(eager and statistics.geometric_mean(eager))}x vs eager, "
            f"{fmt(compiled and statistics.geometric_mean(compiled))}x vs torch.compile")


def smoke(args, files: list[ProblemFile]) -> int:
    """A development check when the sandbox cannot run: each problem's first kernel
    (and its CUDA-graph variant where the plan offers one) exec'd here, compared with the
    reference at fp32 tolerance on one input, and timed with triton.testing.do_bench
    against eager and torch.compile. Not the evaluator's protocol: no isolation, one
    input set, no anti-cheat; numbers are labelled as smoke timings."""
    import triton.testing
    from agent.builtin.search import space_for
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    policy, rows = BuiltinPolicy(), []
    for f in files:
        problem = load_problem(f.path, size=args.size, suite=f.suite, level=f.level)
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
    try:
        module = _exec_source(source, f"builtin_{problem.name}_{variant}")
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
