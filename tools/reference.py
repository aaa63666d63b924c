"""The reference side of an evaluation: the problem's `Model`, run by the trusted process.

The candidate never sees these outputs; they are computed here, on the evaluation
device, with fp32 meaning fp32 (TF32 off), and stay there for the comparison (a
GPU compares a 64M-element output in milliseconds; a CPU takes seconds).
"""
import torch

from tools.problems import Problem, ProblemError
from tools.sandbox.protocol import flatten_output
from tools.sandbox.precision import strict_precision_flags


class Reference:
    def __init__(self, problem: Problem, device: torch.device):
        strict_precision_flags()
        self.problem, self.device = problem, device
        self.model = problem.build_model().to(device)
        self.output_dtypes: list[torch.dtype] = []   # of the last run (the lint runs it first)

    def run(self, inputs: list[torch.Tensor], copy: bool = True) -> tuple[str, list[torch.Tensor]]:
        """(container, output tensors on the reference device), in the worker's flattened form.
        `copy=False`: the caller gives `inputs` up, and the reference may change them."""
        with torch.no_grad():
            # copies: a reference that works in place must not change what the candidate gets
            output = self.model(*[x.to(self.device, copy=copy) for x in inputs])
        container, items = flatten_output(output)
        if not all(type(item) is torch.Tensor for item in items):
            kinds = ", ".join(type(item).__name__ for item in items)
            raise ProblemError(f"{self.problem.path}: Model.forward must return tensors, returned {kinds}")
        self.output_dtypes = [item.dtype for item in items]
        return container, [item.detach().clone() for item in items]
