"""Inclusive cumulative sum along dim 1 of a (batch, dim) fp32 matrix.

Full size 12288 x 16384 (201M elements): one read and one write of 768 MB (~1.6 GB
moved, ~1.3 ms eager on an H100). Each row is a 16K-long scan, so kernels carry a
running total across row chunks.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "cumulative"
batch_size = 12288
dim = 16384
scan_dim = 1
SMALL_SIZES = {"batch_size": 7, "dim": 300}


class Model(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return torch.cumsum(x, dim=self.dim)


def get_inputs():
    return [torch.rand(batch_size, dim)]


def get_init_inputs():
    return [scan_dim]
