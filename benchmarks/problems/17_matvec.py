"""Matrix-vector product y = A @ x with A (M, K) and x (K, 1), fp32.

Full size: A (8192, 7168), x (7168, 1) fp32 -> y (8192, 1).
FLOPs: 2 * 8192 * 7168 = 117 MFLOP. Bytes: 224 MiB of A read once, the rest negligible.
Memory bound: eager (cuBLAS GEMV) took 0.11 ms on an H100; a single pass cannot reach
1 ms while one input set stays under 256 MiB.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "matmul"
M = 8192
K = 7168
SMALL_SIZES = {"M": 33, "K": 300}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, x):
        return torch.matmul(a, x)


def get_inputs():
    return [torch.rand(M, K), torch.rand(K, 1)]


def get_init_inputs():
    return []
