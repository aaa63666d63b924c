"""Per-evaluation overhead of the docker sandbox, warm pool vs strict, against the
process sandbox, on the CPU (Triton interpreter).

    python -m benchmarks.docker_overhead [--n 10] [--trials 5]

Evaluates the honest softmax candidate (04_softmax_rows, small size) `--n` times per
backend after one unmeasured evaluation (references, lint, a warm container's start):
`process` (fork server, one warm child), `docker warm` (one long-lived container, a
fresh child per candidate) and `docker strict` (a container per candidate, started on
demand: `warm=0`, so its start is in every evaluation). Prints median and quartiles
of the wall time per evaluation, and the difference from `process`. Needs a Docker
daemon and the sandbox image (`kernelpilot sandbox build`).
"""
import argparse
import statistics
import time
from pathlib import Path

from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.problems import load_problem
from tools.records import EvalStatus
from tools.sandbox.container_spec import DockerConfig
from tools.sandbox.docker import DockerSandbox
from tools.sandbox.contracts import Limits
from tools.sandbox.process import ProcessSandbox

ROOT = Path(__file__).resolve().parent


def measure(sandbox, n: int, trials: int) -> list[float]:
    problem = load_problem(ROOT / "problems" / "04_softmax_rows.py", size="small")
    source = (ROOT / "candidates" / "04_softmax_rows.py").read_text()
    evaluator = Evaluator(sandbox, detect(force_cpu=True), EvalConfig(trials=trials, baselines=False))
    seconds = []
    for index in range(n + 1):
        start = time.perf_counter()
        result = evaluator.evaluate(problem, source)
        if result.status is not EvalStatus.CORRECT:
            raise RuntimeError(f"the honest candidate came back {result.status}: {result.reason}")
        if index:   # the first one builds the reference and starts what is started once
            seconds.append(time.perf_counter() - start)
    return seconds


def summary(seconds: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(seconds, n=4)
    return median, q1, q3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10, help="measured evaluations per backend")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    limits = Limits(host_memory_bytes=4 * 1024**3)
    backends = {
        "process": lambda: ProcessSandbox(None, limits, warm=1),
        "docker warm": lambda: DockerSandbox(None, limits, warm=1, config=DockerConfig(strict=False)),
        "docker strict": lambda: DockerSandbox(None, limits, warm=0, config=DockerConfig(strict=True)),
    }
    rows = {}
    for name, make in backends.items():
        with make() as sandbox:
            rows[name] = summary(measure(sandbox, args.n, args.trials))
    base = rows["process"][0]
    print("| backend | median s / evaluation | quartiles | over process |\n|---|---|---|---|")
    for name, (median, q1, q3) in rows.items():
        print(f"| {name} | {median:.3f} | {q1:.3f}–{q3:.3f} | {median - base:+.3f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
