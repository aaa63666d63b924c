"""C = A @ B for two square fp32 matrices.

Full size: A, B (4096, 4096) fp32 -> C (4096, 4096).
FLOPs: 2 * 4096^3 = 137 GFLOP. Bytes: 64 MiB per matrix, 192 MiB read and written at least.
Compute bound: cuBLAS SGEMM (TF32 off) on an H100 took 2.66 ms.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "matmul"
N = 4096
SMALL_SIZES = {"N": 47}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return torch.matmul(a, b)


def get_inputs():
    return [torch.rand(N, N), torch.rand(N, N)]


def get_init_inputs():
    return []
