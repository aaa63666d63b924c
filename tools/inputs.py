"""Fresh inputs for every check: secret seeds and several input distributions.

`own` is the problem's `get_inputs()` under a secret seed; `signed` replaces every
floating input by standard-normal samples of the same shape and dtype (KernelBench
inputs are mostly `torch.rand`, so never negative); `scaled` multiplies the problem's
own floating inputs by 10. Integer inputs (indices, class targets) always keep the
problem's own draw, which is what gives them a valid range.
"""
import secrets
from enum import Enum

import torch

from tools.problems import Problem

SCALE = 10.0


class Distribution(str, Enum):
    OWN = "own"
    SIGNED = "signed"
    SCALED = "scaled"


def secret_seed() -> int:
    return secrets.randbits(62)


def draw(problem: Problem, seed: int, distribution: Distribution) -> list[torch.Tensor]:
    """Inputs on the CPU; the same (problem, seed, distribution) gives the same tensors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inputs = problem.draw_inputs()
        generator = torch.Generator().manual_seed(seed ^ 0x5EED)
        return [_transform(x, distribution, generator) for x in inputs]


def _transform(x: torch.Tensor, distribution: Distribution, generator: torch.Generator) -> torch.Tensor:
    if not x.is_floating_point() or distribution is Distribution.OWN:
        return x.contiguous()
    if distribution is Distribution.SIGNED:
        return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.dtype)
    return (x * SCALE).contiguous()


def trial_plan(trials: int, distributions: list[Distribution]) -> list[Distribution]:
    """Cycle through the usable distributions, starting with the problem's own."""
    return [distributions[i % len(distributions)] for i in range(trials)]


def tensor_bytes(inputs: list[torch.Tensor]) -> int:
    return sum(x.numel() * x.element_size() for x in inputs)
