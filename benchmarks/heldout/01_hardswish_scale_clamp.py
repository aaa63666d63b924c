"""Activation chain y = clamp(hardswish(x) * scale, -1, 2) on a (batch, dim) fp32 matrix.

scale is a learned (dim,) vector broadcast along the last dim. Full size 8192 x 4096
(32M elements, 128 MiB): eager runs three kernels, three reads and three writes of the
matrix (~0.8 GB moved); fused it is one read and one write (~0.27 GB). Bandwidth bound.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "activation"
batch_size = 8192
dim = 4096
SMALL_SIZES = {"batch_size": 7, "dim": 300}


class Model(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.rand(dim) * 2.0 + 0.5)

    def forward(self, x):
        y = F.hardswish(x) * self.scale
        return torch.clamp(y, min=-1.0, max=2.0)


def get_inputs():
    return [torch.randn(batch_size, dim) * 3.0]


def get_init_inputs():
    return [dim]
