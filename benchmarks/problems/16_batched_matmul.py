"""Batched matrix product torch.bmm(A, B) with A (batch, M, K) and B (batch, K, N), fp32.

Full size: A (8, 2048, 1536), B (8, 1536, 2048) fp32 -> C (8, 2048, 2048).
FLOPs: 2 * 8 * 2048 * 2048 * 1536 = 103 GFLOP. Bytes: 192 MiB read, 128 MiB written.
Compute bound: cuBLAS batched SGEMM (TF32 off) on an H100 took 2.13 ms.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "matmul"
batch_size = 8
M = 2048
K = 1536
N = 2048
SMALL_SIZES = {"batch_size": 3, "M": 33, "K": 20, "N": 47}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return torch.bmm(a, b)


def get_inputs():
    return [torch.rand(batch_size, M, K), torch.rand(batch_size, K, N)]


def get_init_inputs():
    return []
