"""ReLU(nn.Linear(in_features, out_features)(x)): a GEMM with a bias + ReLU epilogue, fp32.

Full size: x (2048, 4096), weight (8192, 4096), bias (8192,) -> out (2048, 8192).
FLOPs: 2 * 2048 * 8192 * 4096 = 137 GFLOP. Bytes: 32 MiB of x and 128 MiB of weight read,
64 MiB written (plus 64 MiB read and written again by eager's separate ReLU).
Compute bound: eager (cuBLAS addmm, TF32 off, then ReLU) on an H100 took 2.75 ms.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "matmul_epilogue"
batch_size = 2048
in_features = 4096
out_features = 8192
SMALL_SIZES = {"batch_size": 33, "in_features": 47, "out_features": 20}


class Model(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x):
        return torch.relu(self.linear(x))


def get_inputs():
    return [torch.rand(batch_size, in_features)]


def get_init_inputs():
    return [in_features, out_features]
