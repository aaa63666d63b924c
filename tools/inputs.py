"""Fresh inputs for every check: secret seeds and several input distributions.

`own` is the problem's `get_inputs()` under a secret seed; `signed` replaces every
floating input by standard-normal samples of the same shape and dtype (KernelBench
inputs are mostly `torch.rand`, so never negative); `scaled` multiplies the problem's
own floating inputs by 10. Integer inputs (indices, class targets) always keep the
problem's own draw, which is what gives them a valid range.
"""
import secrets
from enum import StrEnum

import torch

from tools.problems import Problem

SCALE = 10.0


class Distribution(StrEnum):
    OWN = "own"
    SIGNED = "signed"
    SCALED = "scaled"


def secret_seed() -> int:
    return secrets.randbits(62)


def draw(problem: Problem, seed: int, distribution: Distribution,
         device: torch.device = torch.device("cpu")) -> list[torch.Tensor]:
    """Inputs made on `device` (`get_inputs()` runs with it as the default device, so a
    GPU draws 64M random numbers in microseconds, not a second); the same (problem, seed,
    distribution, device) gives the same tensors."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        torch.manual_seed(seed)
        inputs = [x.to(device) for x in problem.draw_inputs()]
        generator = torch.Generator(device=device).manual_seed(seed ^ 0x5EED)
        return [_transform(x, distribution, generator) for x in inputs]


def _transform(x: torch.Tensor, distribution: Distribution, generator: torch.Generator) -> torch.Tensor:
    if not x.is_floating_point() or distribution is Distribution.OWN:
        return x.contiguous()
    if distribution is Distribution.SIGNED:
        return torch.randn(x.shape, generator=generator, dtype=torch.float32, device=x.device).to(x.dtype)
    return (x * SCALE).contiguous()


def trial_plan(trials: int, distributions: list[Distribution]) -> list[Distribution]:
    """Cycle through the usable distributions, starting with the problem's own."""
    return [distributions[i % len(distributions)] for i in range(trials)]


def tensor_bytes(inputs: list[torch.Tensor]) -> int:
    return sum(x.numel() * x.element_size() for x in inputs)
