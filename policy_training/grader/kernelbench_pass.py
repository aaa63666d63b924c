"""KernelBench's own evaluation harness on the throughput benchmark's candidates: the side-by-side
pass of `policy_training/grader/throughput.py --kernelbench PATH` (issue 20 part 5).

It calls `eval_kernel_against_ref` from `PATH/src/kernelbench/eval.py` of the user's KernelBench
checkout (PATH/src goes on sys.path in the subprocess only; nothing of KernelBench is copied or
committed here) with num_correct_trials=5, num_perf_trials=100, measure_performance=True,
backend="triton", seed 42 and its excessive-speedup check on (which times the reference too), in
one spawned subprocess that grades serially, one candidate at a time on the GPU: as KernelBench's
scripts/eval_from_generations.py does per GPU (it even starts a fresh process pool per batch; one
kept process is the lenient choice). It needs CUDA, and the modules KernelBench's package imports
(its LLM clients included): both are checked before any pass starts, each failure one line.
Its package imports `litellm` and `dotenv` for its LLM queries, never used by the evaluation;
where they are not installed (the GPU machines: litellm's wheel alone is 44 MB, with boto3 behind
it), `stub_llm=True` (throughput.py --kernelbench-stub-llm) gives the subprocess placeholders for
exactly those two, said in the report: `litellm.completion` raises if anything calls it.

    eval_py = checkout(Path("~/KernelBench").expanduser())     # SystemExit (one line) if it is not one
    with Harness(eval_py, gpu=0, stub_llm=False) as harness:    # SystemExit if it does not import here
        verdict = harness.grade(problem_source, candidate_source)   # Theirs
"""
import contextlib
import importlib.util
import multiprocessing
import sys
import time
import types
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CORRECT_TRIALS = 5
PERF_TRIALS = 100
BACKEND = "triton"
SEED = 42
IMPORT_S = 300.0            # the subprocess's import of torch and KernelBench
LLM_ONLY = ("litellm", "dotenv")    # imported by KernelBench's package for its LLM queries only

_harness = None             # in the subprocess: KernelBench's eval module, or why it did not import
_stubbed: list[str] = []    # in the subprocess: the LLM_ONLY modules given placeholders


@dataclass(frozen=True)
class Theirs:
    """KernelBench's verdict on one candidate, as its KernelExecResult gives it."""

    compiled: bool
    correct: bool
    runtime_us: float | None        # its mean over the timed trials; None when not measured
    excessive: bool                 # its metadata's excessive_speedup
    error: str                      # its metadata's error names, or why there is no result
    seconds: float                  # wall time of the call, in the subprocess
    answered: bool = True           # False: it returned None (its "retry" on a lock-file error)
    device: str = ""                # its metadata's hardware

    def verdict(self) -> str:
        if not self.answered:
            return "no result"
        return "correct" if self.correct else ("incorrect" if self.compiled else "not compiled")


def checkout(path: Path) -> Path:
    """PATH's src/kernelbench/eval.py, or a one-line SystemExit."""
    eval_py = path / "src" / "kernelbench" / "eval.py"
    if not eval_py.is_file():
        raise SystemExit(f"throughput: --kernelbench {path}: no src/kernelbench/eval.py there (give the root of a "
                         f"KernelBench checkout)")
    return eval_py


def need_cuda(cpu: bool) -> None:
    import torch
    if cpu or not torch.cuda.is_available():
        raise SystemExit("throughput: --kernelbench needs a CUDA GPU (KernelBench's eval_kernel_against_ref asserts "
                         "one); " + ("--cpu was given" if cpu else "torch sees none here"))


def _placeholder(name: str) -> types.ModuleType:
    module = types.ModuleType(name, f"a placeholder for {name}, which KernelBench's evaluation never calls")

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{name} is a placeholder here (throughput.py --kernelbench-stub-llm)")
    module.completion, module.load_dotenv = refuse, lambda *args, **kwargs: False
    return module


def _start(src: str, stub_llm: bool) -> None:
    global _harness, _stubbed
    sys.path.insert(0, src)
    for name in LLM_ONLY if stub_llm else ():
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = _placeholder(name)
            _stubbed.append(name)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            import kernelbench.eval as harness
        _harness = harness
    except Exception as error:      # reported by `_ready` as one line
        _harness = f"{type(error).__name__}: {error}"


def _ready() -> tuple[str, list[str]]:
    return _harness if isinstance(_harness, str) else "", _stubbed


def _grade(problem: str, candidate: str, gpu: int) -> Theirs:
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):     # it prints; stdout is the benchmark's tables
        result = _harness.eval_kernel_against_ref(
            problem, candidate, seed_num=SEED, num_correct_trials=CORRECT_TRIALS, num_perf_trials=PERF_TRIALS,
            measure_performance=True, device=gpu, backend=BACKEND, check_for_excessive_speedup=True)
    seconds = time.perf_counter() - started
    if result is None:
        return Theirs(False, False, None, False, "it returned None (a compile lock error: retry)", seconds, False)
    meta = result.metadata
    errors = ", ".join(str(meta[k]) for k in sorted(meta) if k.endswith("error_name"))
    runtime = result.runtime if result.runtime is not None and result.runtime >= 0 else None
    return Theirs(bool(result.compiled), bool(result.correctness), runtime, bool(meta.get("excessive_speedup")),
                  errors, seconds, device=str(meta.get("hardware", "")))


class Harness:
    """One spawned subprocess with KernelBench imported, grading one candidate at a time."""

    def __init__(self, eval_py: Path, gpu: int, stub_llm: bool = False):
        self.gpu = gpu
        src = str(eval_py.parent.parent)
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start, initargs=(src, stub_llm))
        problem, self.stubbed = self._pool.submit(_ready).result(timeout=IMPORT_S)
        if problem:
            self.close()
            raise SystemExit(f"throughput: KernelBench's harness does not import here ({problem}); its package "
                             f"imports its LLM clients too: install its dependencies (pip install -e PATH), or "
                             f"--kernelbench-stub-llm for placeholders of {' and '.join(LLM_ONLY)}")

    def grade(self, problem: str, candidate: str) -> Theirs:
        started = time.perf_counter()
        try:
            return self._pool.submit(_grade, problem, candidate, self.gpu).result()
        except Exception as error:      # raised in their harness, or its process died: no verdict, said so
            return Theirs(False, False, None, False, f"{type(error).__name__}: {error}"[:200],
                          time.perf_counter() - started, answered=False)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> "Harness":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
