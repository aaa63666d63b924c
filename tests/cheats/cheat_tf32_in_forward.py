"""Turns TF32 on inside forward and off again before returning (global precision flags)."""
# expect: rejected|incorrect
# reason-rejected: rule precision_flags
# reason-incorrect: elements outside atol
# problem: 14_matmul_square
# gpu-only: no
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, a, b):
        torch.backends.cuda.matmul.allow_tf32 = True
        c = a @ b
        torch.backends.cuda.matmul.allow_tf32 = False
        return c
