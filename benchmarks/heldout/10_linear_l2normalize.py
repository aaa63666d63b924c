"""Embedding head: y = scale * F.normalize(nn.Linear(in, out)(x), dim=1), each row scaled to
unit L2 norm then by a fixed factor.

Full size x (256, 1024), weight (256, 1024): 0.13 GFLOP and 2 MiB of data, so eager's
GEMM plus its norm, clamp, divide and scale kernels are bound by launch cost.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "matmul_epilogue"
batch_size = 256
in_features = 1024
out_features = 256
scale = 16.0
SMALL_SIZES = {"batch_size": 33, "in_features": 47, "out_features": 20}


class Model(nn.Module):
    def __init__(self, in_features, out_features, scale):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.scale = scale

    def forward(self, x):
        return F.normalize(self.linear(x), p=2.0, dim=1) * self.scale


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, out_features, scale]
