"""Non-causal F.scaled_dot_product_attention(q, k, v) on (batch, heads, seq, head_dim) fp32.

Full size: q, k, v (4, 16, 2048, 64) fp32 -> out (4, 16, 2048, 64).
FLOPs: 4 * 4 * 16 * 2048^2 * 64 = 69 GFLOP (QK^T and PV), plus 268 M exponentials.
Bytes: 96 MiB read, 32 MiB written by a fused kernel.
Compute bound: eager (the memory-efficient fp32 backend) on an H100 took 2.0 ms.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

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
        return F.scaled_dot_product_attention(q, k, v)


def get_inputs():
    # Std 0.25 keeps the evaluator's x10 "scaled" inputs well conditioned: at std 10 the
    # scores reach +-400 and two exact fp32 kernels (eager included) differ past the bar.
    shape = (batch_size, num_heads, seq_len, head_dim)
    return [torch.randn(shape) * 0.25, torch.randn(shape) * 0.25, torch.randn(shape) * 0.25]


def get_init_inputs():
    return []
