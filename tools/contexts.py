"""The problems' references and lints an evaluator keeps between calls, least recently used
first out. A batch run evaluates one problem many times in a row; a grader or a trainer's batch
interleaves many problems, and rebuilding a reference (its model on the device) and rerunning
its lint (five reference forwards) for each evaluation costs lane time. So contexts are kept
while their reference models' parameters and buffers fit in `budget_bytes` (GPU memory the
candidates then lack), and the last `floor` are kept whatever their size, except a heavy
problem's on a GPU that lanes share: the evaluator drops it once its evaluation is over
(`drop`; tools/gpu_share.py), and those lanes split the budget.

    contexts = Contexts(device, guard=device_lock)
    context = contexts.get(problem)       # built once per (problem, size), then reused

A build runs the reference on the device (its model moved there, the lint's five forwards), so
it happens inside `guard`, the machine-wide device lock (tools/device_lock.py): never beside
another lane's timed calls.
"""
from collections import OrderedDict
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch

from tools.device import DeviceInfo
from tools.inputs import Distribution, tensor_bytes
from tools.lint import lint_problem
from tools.problems import Problem
from tools.records import LintReport, Mode
from tools.reference import Reference
from tools.sandbox.contracts import GiB

FLOOR = 2                   # kept whatever their size
BUDGET_BYTES = 2 * GiB      # beyond the floor: kept while their models' tensors fit in this
MOST = 64                   # and never more than this many


@dataclass
class ProblemContext:
    reference: Reference
    lint: LintReport
    distributions: list[Distribution] = field(default_factory=list)


def model_bytes(reference: Reference) -> int:
    """What the reference model holds on its device: parameters and buffers."""
    return tensor_bytes([*reference.model.parameters(), *reference.model.buffers()])


class Contexts:
    def __init__(self, device: DeviceInfo, budget_bytes: int = BUDGET_BYTES, floor: int = FLOOR, most: int = MOST,
                 guard: AbstractContextManager = nullcontext()):
        self.device, self.budget_bytes, self.floor, self.most, self.guard = device, budget_bytes, floor, most, guard
        self._kept: OrderedDict[tuple[str, str], tuple[ProblemContext, int]] = OrderedDict()

    def get(self, problem: Problem) -> ProblemContext:
        key = (problem.hash, problem.size)
        if key not in self._kept:
            self._evict(room_for=1)
            with self.guard:
                reference = Reference(problem, self.device.torch_device)
                lint = lint_problem(reference)
            if self.device.mode is Mode.GPU:
                torch.cuda.empty_cache()    # the lint's outputs, gigabytes on KernelBench's sizes
            context = ProblemContext(reference, lint, [Distribution(d) for d in lint.distributions])
            self._kept[key] = (context, model_bytes(reference))
            self._evict(room_for=0)
        self._kept.move_to_end(key)
        return self._kept[key][0]

    def drop(self, problem: Problem) -> None:
        """Forget the problem's context, its reference's tensors with it: a heavy problem's, once
        its evaluation on a device other lanes share is over (tools/gpu_share.py), floor or not."""
        self._kept.pop((problem.hash, problem.size), None)

    def __contains__(self, problem: Problem) -> bool:
        return (problem.hash, problem.size) in self._kept

    def __len__(self) -> int:
        return len(self._kept)

    def _evict(self, room_for: int) -> None:
        """Oldest first, down to `floor` (+ the room asked for a context about to be built),
        until the rest fit the count and the byte budget."""
        def over() -> bool:
            kept_bytes = sum(size for _, size in self._kept.values())
            return len(self._kept) + room_for > self.most or kept_bytes > self.budget_bytes
        while len(self._kept) + room_for > self.floor and over():
            self._kept.popitem(last=False)
