"""Sequence pooling: the mean and the max over the middle (sequence) dim of a (batch, seq, dim)
fp32 tensor, concatenated along the last dim into (batch, 2 * dim).

A reduction over a non-last dim. Full size 64 x 512 x 768 (25M elements, 96 MiB): eager
reads the input twice (mean, amax) and writes a small output through a concat (~0.2 GB
moved); fused it is one read. Bandwidth bound.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "reduction"
batch_size = 64
seq_len = 512
dim = 768
SMALL_SIZES = {"batch_size": 3, "seq_len": 37, "dim": 300}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=-1)


def get_inputs():
    return [torch.randn(batch_size, seq_len, dim)]


def get_init_inputs():
    return []
