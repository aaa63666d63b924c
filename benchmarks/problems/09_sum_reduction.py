"""Sum over dim 1 (keepdim=True) of a (batch, dim1, dim2) fp32 tensor.

Full size 16 x 4096 x 1024 (64M elements): a 256 MB read and a 64 KB write
(~0.27 GB moved, ~0.12 ms eager on an H100). The reduced dim is strided, so
kernels reduce columns of tiles rather than contiguous rows.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "reduction"
batch_size = 16
dim1 = 4096
dim2 = 1024
reduce_dim = 1
SMALL_SIZES = {"batch_size": 3, "dim1": 300, "dim2": 33}


class Model(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return torch.sum(x, dim=self.dim, keepdim=True)


def get_inputs():
    return [torch.rand(batch_size, dim1, dim2)]


def get_init_inputs():
    return [reduce_dim]
