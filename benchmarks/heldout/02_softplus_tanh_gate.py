"""Gated activation y = tanh(softplus(a)) * sigmoid(b) on two small (batch, dim) fp32 matrices.

Full size 256 x 1024 (262K elements, 1 MiB each): eager runs four tiny kernels, so the
host's launch cost decides its time rather than memory traffic; fused it is one kernel.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "activation"
batch_size = 256
dim = 1024
SMALL_SIZES = {"batch_size": 7, "dim": 300}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return torch.tanh(F.softplus(a)) * torch.sigmoid(b)


def get_inputs():
    return [torch.randn(batch_size, dim), torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
