"""GELU, tanh approximation, written out in eager ops on a (batch, dim) fp32 matrix.

y = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))). Full size 8192 x 8192
(64M elements, 256 MB): eager runs eight kernels, ~18 passes over 256 MB (~4.6 GB
moved, ~1.9 ms on an H100); fused it is one read and one write (~0.5 GB). About
10 FLOPs plus one tanh per element.
"""
import math

import torch
import torch.nn as nn

OP_CATEGORY = "activation"
batch_size = 8192
dim = 8192
SMALL_SIZES = {"batch_size": 7, "dim": 300}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        inner = x + 0.044715 * torch.pow(x, 3.0)
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * inner))


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
