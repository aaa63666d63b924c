"""Host cost of a kernel launch (issue 24's first row): the microseconds the host spends per
launch, for a bare Triton `kernel[grid](...)`, the same kernel through its compiled handle, an eager
PyTorch op, and the built-in policy's generated wrappers on suite problems. GPU only; the
figures go to benchmarks/RESULTS.md.

    python -m benchmarks.launch_cost                                  # on a GPU machine
    python -m benchmarks.launch_cost --calls 5000 --only '01*,24*' --out /tmp/launch.json

Method: the GPU is first put to sleep (`torch.cuda._sleep`, about 100 us a launch), so the host
queues a round of calls (at most 512 queued operations, kernels and copies, below the driver's
queue of pending launches)
while the GPU does nothing else. Host time per call = the round's wall time / its calls; per
launch = that / the kernels one call launches (counted once with torch.profiler). CUDA events
around the round, recorded behind the sleep, give the GPU's own time per call with no idle gap.
The median over the rounds is reported; a row is `host-bound` when the host's time per call
exceeds the GPU's (back to back, the host would set the pace) and `gpu-bound` otherwise.
The wrappers are the built-in
policy's plan in its default configuration (benchmarks/builds.py `first_candidate`), so each
kernel is launched by its own wrapper. The `graph` rows are the same plans with `cuda_graph`
on, as the policy's GPU search tries first for a launch-bound plan: the forward captured once,
then each call copies its inputs into the graph's buffers, replays it and clones the output; their
"per launch" divides by the forward's own kernels (the copies are the price of the graph). They
run here in this process on problems at their small size: trusted code, nothing sandboxed.
"""
import argparse
import fnmatch
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import triton
import triton.language as tl

PROBLEMS = Path(__file__).resolve().parent / "problems"
WRAPPED = "01_scale_bias_relu_chain,04_softmax_rows,06_layernorm,18_linear_bias_relu,24_tiny_mlp"
GRAPHED = "01_scale_bias_relu_chain,18_linear_bias_relu,24_tiny_mlp"     # one kernel, four, fifteen
QUEUE = 512                         # launches queued per round: below the driver's pending-launch limit
SLEEP_CYCLES_PER_LAUNCH = 200_000   # about 100 us a launch at 2 GHz: the GPU sleeps while the host queues


@dataclass(frozen=True)
class Row:
    case: str
    launches: int               # kernels one call launches
    host_us_per_call: float
    host_us_per_launch: float
    gpu_us_per_call: float
    bound: str                  # host-bound (the host's time per call exceeds the GPU's) or gpu-bound
    note: str = ""


@triton.jit
def _scale_kernel(in0_ptr, out0_ptr, n_elements, n_cols, n_inner, n_channels, BLOCK: tl.constexpr):
    offs = tl.program_id(axis=0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    tl.store(out0_ptr + offs, tl.load(in0_ptr + offs, mask=mask) * 2.0, mask=mask)


def measure(case: str, call: Callable[[], object], calls: int, note: str = "") -> Row:
    for _ in range(20):             # warm: compiles, caches, allocator
        call()
    torch.cuda.synchronize()
    launches, queued = count_launches(call)
    per_round = round_size(calls, queued)
    host, gpu = [], []
    start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(max(1, calls // per_round)):
        torch.cuda._sleep(SLEEP_CYCLES_PER_LAUNCH * per_round * queued)  # the host queues behind it
        start_event.record()
        start = time.perf_counter()
        for _ in range(per_round):
            call()
        host.append((time.perf_counter() - start) * 1e6 / per_round)
        end_event.record()
        torch.cuda.synchronize()
        gpu.append(start_event.elapsed_time(end_event) * 1e3 / per_round)
    host_us, gpu_us = statistics.median(host), statistics.median(gpu)
    return Row(case, launches, round(host_us, 2), round(host_us / max(launches, 1), 2), round(gpu_us, 2),
               "host-bound" if host_us > gpu_us else "gpu-bound", note)


def round_size(calls: int, queued: int) -> int:
    """Calls a round queues: as many as `calls`, with their queued operations (kernels and
    copies) at most QUEUE, so the host never waits on a full queue and times only itself."""
    return max(1, min(calls, QUEUE // max(queued, 1)))


def count_launches(call: Callable[[], object]) -> tuple[int, int]:
    """(kernels, queued): the kernels one call launches, and every operation it puts on the GPU's
    queue, copies and fills too (a CUDA graph's call adds an input copy and an output clone, and
    a queue sized by its kernels alone overflowed: the host then waited on the sleeping GPU and
    the row measured that wait, about 110 us a call for a one-kernel graph at stops 23-24)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(1 for e in events if not e.name.startswith(("Memcpy", "Memset"))), len(events)


def bare_cases(calls: int) -> list[Row]:
    x = torch.randn(1024, device="cuda")
    out = torch.empty_like(x)
    n = x.numel()
    grid = (triton.cdiv(n, 1024),)
    rows = [measure("triton kernel[grid](...)", lambda: _scale_kernel[grid](x, out, n, 1024, 1, 1, BLOCK=1024),
                    calls),
            measure("eager torch.mul (one ATen launch)", lambda: torch.mul(x, 2.0, out=out), calls)]
    try:        # the compiled handle, past JITFunction's argument binding and cache lookup
        compiled = _scale_kernel.warmup(x, out, n, 1024, 1, 1, BLOCK=1024, grid=grid)
        launcher = compiled[(grid[0], 1, 1)]      # its runner reads three grid sizes, as JITFunction.run passes them
        rows.insert(1, measure("triton compiled[grid](...)", lambda: launcher(x, out, n, 1024, 1, 1, 1024), calls))
    except Exception as error:     # an API this Triton version lacks: said, not hidden
        rows.insert(1, Row("triton compiled[grid](...)", 0, float("nan"), float("nan"), float("nan"),
                           "not measured", f"{type(error).__name__}: {error}"[:120]))
    return rows


def wrapper_case(path: Path, calls: int, folder: Path, graph: bool = False) -> Row:
    from benchmarks.builds import first_candidate
    from tools.problems import load_problem

    case = f"{'graph' if graph else 'wrapper'} {path.stem} (small)"
    problem = load_problem(path, size="small")
    built = [first_candidate(problem, folder, **({"cuda_graph": on} if graph else {})) for on in (False, True)[:1 + graph]]
    failed = next((b for b in built if isinstance(b, str)), None)
    if failed:
        return Row(case, 0, float("nan"), float("nan"), float("nan"), "not measured", failed)
    inputs = [x.cuda() for x in problem.draw_inputs()]
    models = []
    for module, _ in built:
        torch.manual_seed(0)
        models.append(module.ModelNew(*problem.init_inputs()).cuda())
    with torch.no_grad():
        if not graph:
            return measure(case, lambda: models[0](*inputs), calls)
        kernels, _ = count_launches(lambda: models[0](*inputs))     # the forward's own, launched one by one
        row = measure(case, lambda: models[1](*inputs), calls)
    return replace(row, launches=kernels, host_us_per_launch=row.host_us_per_call / kernels,
                   note=f"{row.launches} launches a call as a graph replay with its copies")


def suite(globs: str) -> list[Path]:
    """The suite's problems matching any of the comma-separated globs (a bare prefix matches too)."""
    patterns = [g + ("*" if "*" not in g else "") for g in globs.split(",") if g.strip()]
    return [p for p in sorted(PROBLEMS.glob("[0-9]*.py")) if any(fnmatch.fnmatch(p.stem, g) for g in patterns)]


def table(rows: list[Row], device: str) -> str:
    lines = [f"Device: {device}; torch {torch.__version__}, triton {triton.__version__}", "",
             "| case | launches per call | host us per call | host us per launch | GPU us per call | bound | note |",
             "|---|---:|---:|---:|---:|---|---|"]
    lines += [f"| {r.case} | {r.launches} | {r.host_us_per_call:.1f} | {r.host_us_per_launch:.1f} | "
              f"{r.gpu_us_per_call:.1f} | {r.bound} | {r.note} |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per case, back to back (default 2000)")
    parser.add_argument("--only", default=WRAPPED, help="comma-separated globs over suite problems to wrap "
                        f"(default {WRAPPED})")
    parser.add_argument("--graphs", default=GRAPHED, help="comma-separated globs over suite problems whose plan is "
                        f"also measured as a CUDA graph (default {GRAPHED}; '' for none)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("launch_cost: no CUDA device: this benchmark measures GPU launches and needs a GPU", file=sys.stderr)
        return 2
    rows = bare_cases(args.calls)
    with tempfile.TemporaryDirectory() as folder:
        rows += [wrapper_case(path, args.calls, Path(folder)) for path in suite(args.only)]
        rows += [wrapper_case(path, args.calls, Path(folder), graph=True) for path in suite(args.graphs)]
    print(table(rows, torch.cuda.get_device_name()))
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
