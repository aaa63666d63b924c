"""tools/contexts.py: the references and lints an evaluator keeps between calls, by a byte budget."""
from pathlib import Path

from tools.contexts import Contexts, model_bytes
from tools.device import detect
from tools.evaluator import Evaluator
from tools.problems import load_problem

SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "problems"
NAMES = ("01_scale_bias_relu_chain", "02_gelu_tanh", "03_silu_hardtanh", "18_linear_bias_relu")


def problems():
    return [load_problem(SUITE / f"{name}.py", size="small") for name in NAMES]


def test_interleaved_problems_keep_their_contexts_within_the_budget(cpu_sandbox):
    """A grader's queue interleaves problems: each is built once, not once per evaluation
    (the evaluator kept the last two whatever their size before)."""
    evaluator, loaded = Evaluator(cpu_sandbox, detect(force_cpu=True)), problems()
    first = [evaluator.context(p) for p in loaded]
    again = [evaluator.context(p) for p in reversed(loaded)]
    assert all(a is b for a, b in zip(first, reversed(again)))


def test_past_the_budget_the_least_recently_used_go_down_to_the_floor():
    loaded = problems()
    contexts = Contexts(detect(force_cpu=True), budget_bytes=1, floor=2)   # every model is over one byte
    built = [contexts.get(p) for p in loaded]
    assert len(contexts) == 2
    assert contexts.get(loaded[-1]) is built[-1] and contexts.get(loaded[-2]) is built[-2]   # the newest kept
    assert contexts.get(loaded[0]) is not built[0]                                            # the oldest rebuilt
    assert model_bytes(built[-1].reference) > 0       # 18 is a Linear: its weight and bias on the device


def test_the_count_is_capped_whatever_the_budget():
    loaded = problems()
    contexts = Contexts(detect(force_cpu=True), floor=1, most=3)
    built = [contexts.get(p) for p in loaded]
    assert len(contexts) == 3
    assert contexts.get(loaded[0]) is not built[0] and contexts.get(loaded[-1]) is built[-1]


class Counting:
    """A guard that counts how often it is taken (the evaluator passes its device lock)."""

    def __init__(self):
        self.taken = 0

    def __enter__(self):
        self.taken += 1

    def __exit__(self, *exc):
        return None


def test_a_build_takes_the_guard_and_a_kept_context_does_not():
    guard, loaded = Counting(), problems()
    contexts = Contexts(detect(force_cpu=True), guard=guard)
    contexts.get(loaded[0])
    contexts.get(loaded[0])
    contexts.get(loaded[1])
    assert guard.taken == 2
