"""A deep, narrow residual MLP: num_layers blocks of x = LayerNorm(x + GELU(Linear(x))).

Launch bound: every block is four tiny eager kernels (addmm, gelu, add, layer_norm) on a
(64, 256) activation, so eager time is Python and launch overhead, not arithmetic.
Full size: x (64, 256) fp32, 32 blocks of Linear(256, 256) + LayerNorm(256) -> out (64, 256).
FLOPs: 32 * 2 * 64 * 256 * 256 = 0.27 GFLOP. Bytes: 8 MiB of weights, 64 KiB of activations.
Eager (128 launches) took 1.7 and 2.7 ms on two H100 hosts (it depends on the host CPU);
the one-kernel Triton candidate took about 0.9 ms.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "model"
batch_size = 64
hidden = 256
num_layers = 32
SMALL_SIZES = {"batch_size": 20, "hidden": 48, "num_layers": 3}


class Model(nn.Module):
    def __init__(self, hidden, num_layers):
        super().__init__()
        self.linears = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(num_layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(num_layers)])

    def forward(self, x):
        for linear, norm in zip(self.linears, self.norms):
            x = norm(x + F.gelu(linear(x)))
        return x


def get_inputs():
    return [torch.rand(batch_size, hidden)]


def get_init_inputs():
    return [hidden, num_layers]
