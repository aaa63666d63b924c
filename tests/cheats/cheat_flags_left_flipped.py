"""Lowers torch's float32 matmul precision in forward and leaves it lowered."""
# expect: rejected
# reason: precision flags
# problem: 14_matmul_square
# gpu-only: no
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, a, b):
        torch.set_float32_matmul_precision("medium")
        return a @ b
