"""Returns a constant on a problem whose output barely depends on its input (a constant output on a weak problem: the problem is flagged, the candidate has no kernel)."""
# expect: correct
# flags: degenerate_problem,no_custom_kernel
# gpu-flags: excessive_speedup
# problem: cheats/problems/degenerate_scale
# gpu-only: no
# twin: honest_degenerate_kernel
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.ones_like(x)
