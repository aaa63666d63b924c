"""The one prompt builder every LLM policy uses (and training reuses).

A prompt is a system message (the role, the rules a kernel must keep — the
evaluator's anti-cheat rules stated plainly — and the turn format) and a first user
message (the task, the reference source, the device, and earlier kernels for this
problem with their measured speedups, score-stratified as in CUDA-L1's contrastive
prompts: a fast, a middling and a slow one, so the model sees what made the
difference).

    messages = build_messages(problem, Backend.TRITON, device, exemplars(store, problem))
"""
from dataclasses import dataclass

from tools.device import DeviceInfo
from tools.history import HistoryStore
from tools.problems import Problem
from tools.records import Mode
from tools.trust import Use, Versus, allowed, trusted_speedup

from agent.policy import Backend

EXEMPLAR_CHARS = 6000

RULES = """\
Rules the evaluator enforces (breaking one gets the candidate rejected, not scored):
- Define `class ModelNew(nn.Module)` with the same constructor arguments as `Model`; create the
  same parameters in the same order so the weights match.
- Compute the whole forward on the inputs of each call: no caching of outputs between calls,
  no precomputation, no work on a side stream or thread left running after forward returns.
- Return a fresh tensor of exactly the reference's type, dtype, shape and device; never an
  input or a view of one; never modify an input.
- Keep the reference's precision: fp32 stays fp32 (no TF32, no fp16 downcast); do not change
  torch's global flags (TF32, matmul precision, cuDNN).
- Do not touch timers, synchronisation, the profiler, torch's ops, the problem module, files,
  the network, environment variables or subprocesses.
- The work must run in your own kernels; calling the reference op itself is flagged."""

TURN_FORMAT = """\
Every reply must begin with a section headed `## Performance analysis`: what bounds the current
best (memory or compute), the bytes moved and FLOPs, where it sits against the roofline, what the
earlier kernels show, and the plan for this turn; on a line starting `Coverage:`, which parts of
the forward your kernels compute and which stay in PyTorch (and why). Then call tools. A reply
without the analysis is refused and its tool calls do not run. Tools take the full candidate source as `code`.
Use `benchmark` to measure a candidate, `profile` to see its kernels, and `submit` to hand back
the best one; reply without tool calls when you are done."""

BACKEND_NOTES = {
    Backend.TRITON: "Write the kernels in Triton (`import triton`, `import triton.language as tl`, "
                    "`@triton.jit`), launched from ModelNew.forward. They must run on Triton 3.6 and 3.7.",
    Backend.CUDA: "Write the kernels in CUDA C++ compiled with torch.utils.cpp_extension.load_inline "
                  "at import, called from ModelNew.forward.",
}


# What `kernelpilot chat` sends for its first turn and for /optimize (the built-in policy knows them).
ANALYSE_REQUEST = ("Before running anything: where does the time go? Give the performance analysis and your plan, "
                   "and call no tools yet; I will ask questions or ask you to optimize.")
OPTIMIZE_REQUEST = ("Optimize this problem: write kernels, measure them with benchmark, profile where it helps, "
                    "and submit the fastest correct one.")


@dataclass(frozen=True)
class Exemplar:
    """An earlier kernel for this problem with what it measured."""

    code: str
    status: str
    speedup_vs_eager: float | None
    analysis: str | None


def system_prompt(backend: Backend) -> str:
    return "\n\n".join([
        "You are kernelpilot, an expert GPU performance engineer. You make a PyTorch module faster by "
        "writing verified GPU kernels for it.", BACKEND_NOTES[backend], RULES, TURN_FORMAT])


def device_facts(device: DeviceInfo) -> str:
    if device.mode is Mode.GPU:
        return f"Device: {device.name} (CUDA). Timings are medians of CUDA-event-timed calls with the L2 flushed."
    return ("Device: no GPU on this machine. Kernels run in the Triton interpreter on the CPU: correctness is "
            "checked, speed is not measured, so prefer a simple correct kernel.")


def task_message(problem: Problem, backend: Backend, device: DeviceInfo, exemplars: list[Exemplar]) -> str:
    parts = [f"Optimize `{problem.name}` ({problem.category or 'uncategorised'}) with {backend.value} kernels.",
             device_facts(device),
             f"The reference (problem size: {problem.size}):\n```python\n{problem.source.strip()}\n```"]
    if exemplars:
        parts.append("Earlier kernels for this problem, fastest first, with their measured results:")
        parts += [render_exemplar(i, e) for i, e in enumerate(exemplars, 1)]
    return "\n\n".join(parts)


def render_exemplar(index: int, exemplar: Exemplar) -> str:
    speed = (f"{exemplar.speedup_vs_eager:.2f}x vs eager" if exemplar.speedup_vs_eager is not None
             else "speed not measured")
    analysis = f"\nIts analysis: {exemplar.analysis.strip()[:600]}" if exemplar.analysis else ""
    code = exemplar.code if len(exemplar.code) <= EXEMPLAR_CHARS else exemplar.code[:EXEMPLAR_CHARS] + "\n# ...cut"
    return f"Kernel {index}: {exemplar.status}, {speed}.{analysis}\n```python\n{code}\n```"


def exemplars(store: HistoryStore, problem: Problem, k: int = 3) -> list[Exemplar]:
    """Fast, middling and slow correct kernels from the history (what a contrastive prompt shows);
    only those the trust rules allow as a best (a flagged one would teach its flaw)."""
    found = []
    for entry in store.stratified(problem.hash, k):
        code = store.source(entry.candidate_hash)
        if code is not None and allowed(entry, Use.BEST):
            found.append(Exemplar(code, entry.status.value, trusted_speedup(entry, Versus.EAGER), entry.analysis))
    return found


def build_messages(problem: Problem, backend: Backend, device: DeviceInfo,
                   examples: list[Exemplar]) -> list[dict]:
    return [{"role": "system", "content": system_prompt(backend)},
            {"role": "user", "content": task_message(problem, backend, device, examples)}]


def correction(tool_calls: int) -> str:
    """What the policy is told after a turn without the analysis."""
    skipped = f" Its {tool_calls} tool call(s) were not run." if tool_calls else ""
    return ("Your reply did not begin with a `## Performance analysis` section." + skipped +
            " Begin every reply with that section, then call tools.")
