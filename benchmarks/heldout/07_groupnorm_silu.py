"""nn.GroupNorm(32 groups, with affine) followed by SiLU on an NCHW fp32 batch, as in a
diffusion U-Net block.

Full size x (16, 256, 32, 32) (4M elements, 16 MiB): eager runs the group norm then SiLU
(two reads, two writes); fused it is one read and one write.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "norm"
batch_size = 16
channels = 256
num_groups = 32
height = 32
width = 32
SMALL_SIZES = {"batch_size": 3, "channels": 12, "num_groups": 3, "height": 9, "width": 11}


class Model(nn.Module):
    def __init__(self, channels, num_groups):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups, channels)

    def forward(self, x):
        return F.silu(self.norm(x))


def get_inputs():
    return [torch.randn(batch_size, channels, height, width)]


def get_init_inputs():
    return [channels, num_groups]
