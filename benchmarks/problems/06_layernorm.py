"""nn.LayerNorm over the last dimension (with affine weight and bias) of a (batch, dim) fp32 matrix.

Full size 16384 x 16384 (268M elements): one read and one write of 1 GiB (~2.1 GB
moved, ~1.2 ms eager on an H100), ~8 FLOPs per element.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "norm"
batch_size = 16384
dim = 16384
SMALL_SIZES = {"batch_size": 7, "dim": 300}


class Model(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.ln = nn.LayerNorm(dim)

    def forward(self, x):
        return self.ln(x)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return [dim]
