"""Sum over dim 1 (keepdim=True) of a (batch, dim1, dim2) fp32 tensor.

Full size 128 x 4096 x 1024 (512M elements): a 2 GiB read and a 512 KB write
(~2.1 GB moved, ~0.9 ms eager on an H100). The reduced dim is strided, so
kernels reduce columns of tiles rather than contiguous rows.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "reduction"
batch_size = 128
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
