"""C = A @ B.T for a rectangular A (M, K) and B (N, K), fp32.

Full size: A (4096, 2048), B (6144, 2048) fp32 -> C (4096, 6144).
FLOPs: 2 * 4096 * 6144 * 2048 = 103 GFLOP. Bytes: 32 + 48 MiB read, 96 MiB written.
Compute bound: cuBLAS SGEMM (TF32 off) on an H100 took 2.05 ms.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "matmul"
M = 4096
N = 6144
K = 2048
SMALL_SIZES = {"M": 33, "N": 47, "K": 20}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return torch.matmul(a, b.T)


def get_inputs():
    return [torch.rand(M, K), torch.rand(N, K)]


def get_init_inputs():
    return []
