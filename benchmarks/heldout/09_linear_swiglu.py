"""SwiGLU projection: h = nn.Linear(in, 2 * hidden)(x), split in halves (a, b), y = silu(a) * b.

Full size x (512, 1024), weight (4096, 1024): 2 * 512 * 1024 * 4096 = 4.3 GFLOP in fp32
(no TF32); eager also writes the (512, 4096) projection and reads it back for the gate.
The output is (512, 2048).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "matmul_epilogue"
batch_size = 512
in_features = 1024
hidden = 2048
SMALL_SIZES = {"batch_size": 33, "in_features": 47, "hidden": 20}


class Model(nn.Module):
    def __init__(self, in_features, hidden):
        super().__init__()
        self.proj = nn.Linear(in_features, 2 * hidden)

    def forward(self, x):
        a, b = self.proj(x).chunk(2, dim=-1)
        return F.silu(a) * b


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, hidden]
