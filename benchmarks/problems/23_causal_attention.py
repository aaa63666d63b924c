"""Causal attention written as eager ops: softmax(mask(q @ k^T * scale)) @ v, fp32.

Shapes (batch, heads, seq, head_dim); the mask sets scores above the diagonal to -inf.
Full size: q, k, v (4, 16, 2048, 64) fp32 -> out (4, 16, 2048, 64).
FLOPs: eager 4 * 4 * 16 * 2048^2 * 64 = 69 GFLOP (a fused causal kernel needs about half).
Bytes: 96 MiB read, 32 MiB written by a fused kernel; eager materialises the 1 GiB score
tensor and passes over it about 8 times (scale, mask, softmax, PV).
Memory bound in eager: on an H100 it took 5.1 ms.
"""
import math

import torch
import torch.nn as nn

OP_CATEGORY = "attention"
batch_size = 4
num_heads = 16
seq_len = 2048
head_dim = 64
SMALL_SIZES = {"batch_size": 2, "num_heads": 3, "seq_len": 37}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, q, k, v):
        seq = q.size(-2)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
        future = torch.ones(seq, seq, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v


def get_inputs():
    shape = (batch_size, num_heads, seq_len, head_dim)
    return [torch.randn(shape), torch.randn(shape), torch.randn(shape)]


def get_init_inputs():
    return []
