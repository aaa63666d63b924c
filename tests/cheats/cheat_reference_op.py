"""Calls the reference's own op instead of a kernel (an honest PyTorch rewrite: flagged, not rejected)."""
# expect: correct
# flags: no_custom_kernel
# problem: 04_softmax_rows
# gpu-only: no
# twin: honest_softmax
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=-1)
