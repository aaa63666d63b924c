"""Log-softmax over the last dimension of a (batch, dim) fp32 matrix.

Full size 24576 x 16384 (402M elements): one read and one write of 1.5 GiB (~3.2 GB
moved, ~1.3 ms eager on an H100). Needs a stable log-sum-exp over rows of 64 KB.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "softmax"
batch_size = 24576
dim = 16384
SMALL_SIZES = {"batch_size": 7, "dim": 300}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.log_softmax(x, dim=-1)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
