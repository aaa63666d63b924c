"""Argmax over dim 1 of a (batch, dim1, dim2) fp32 tensor; int64 output of shape (batch, dim2).

Full size 128 x 4096 x 1024 (512M elements): a 2 GiB read and a 1 MB write
(~2.1 GB moved, ~1.2 ms eager on an H100). Ties go to the first index, as in
torch; continuous random inputs make ties vanishingly rare.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "argreduction"
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
        return torch.argmax(x, dim=self.dim)


def get_inputs():
    return [torch.rand(batch_size, dim1, dim2)]


def get_init_inputs():
    return [reduce_dim]
