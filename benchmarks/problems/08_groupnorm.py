"""nn.GroupNorm (8 groups, affine) on an (N, C, H, W) fp32 tensor.

Full size 32 x 64 x 256 x 256 (134M elements, 512 MB): each of the 256 (sample,
group) slices holds 512K elements. Eager reads the input twice and writes once
(~1.5 GB moved, ~1.3 ms on an H100).
"""
import torch
import torch.nn as nn

OP_CATEGORY = "norm"
batch_size = 32
features = 64
num_groups = 8
height = 256
width = 256
SMALL_SIZES = {"batch_size": 3, "features": 12, "num_groups": 4, "height": 9, "width": 11}


class Model(nn.Module):
    def __init__(self, num_features, num_groups):
        super().__init__()
        self.gn = nn.GroupNorm(num_groups=num_groups, num_channels=num_features)

    def forward(self, x):
        return self.gn(x)


def get_inputs():
    return [torch.randn(batch_size, features, height, width)]


def get_init_inputs():
    return [features, num_groups]
