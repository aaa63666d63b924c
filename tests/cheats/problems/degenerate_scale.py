"""A degenerate problem for the cheat fixtures: the output is 1 + 1e-7 * x, so a constant
answer of ones passes fp32's tolerance. The problem lint must flag it."""
import torch
import torch.nn as nn

OP_CATEGORY = "elementwise"
batch_size = 4096
dim = 4096
SMALL_SIZES = {"batch_size": 7, "dim": 300}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return x * 1e-7 + 1.0


def get_inputs():
    return [torch.rand(batch_size, dim)]


def get_init_inputs():
    return []
