"""log_softmax(x / temperature) over dim 1 (channels) of a (batch, channels, length) fp32 tensor.

A softmax over a non-last, strided dim: each of the batch * length columns normalises
128 values that lie `length` elements apart. Full size 32 x 128 x 4096 (16M elements,
64 MiB): eager scales, then log-softmaxes (two reads, two writes, ~0.27 GB); fused it is
one read and one write.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "softmax"
batch_size = 32
channels = 128
length = 4096
temperature = 0.7
SMALL_SIZES = {"batch_size": 3, "channels": 13, "length": 300}


class Model(nn.Module):
    def __init__(self, temperature):
        super().__init__()
        self.temperature = temperature

    def forward(self, x):
        return torch.log_softmax(x / self.temperature, dim=1)


def get_inputs():
    return [torch.randn(batch_size, channels, length)]


def get_init_inputs():
    return [temperature]
