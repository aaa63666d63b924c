"""ReLU(nn.Conv2d(Cin, Cout, 3, padding=1)(x)) on an NCHW fp32 batch.

Full size: x (16, 128, 112, 112), weight (128, 128, 3, 3), bias (128,) -> out (16, 128, 112, 112).
FLOPs: 2 * 16 * 128 * 112 * 112 * 128 * 9 = 59 GFLOP. Bytes: 98 MiB read, 98 MiB written
(eager's separate ReLU reads and writes the output once more).
Compute bound: eager (cuDNN, TF32 off, then ReLU) on an H100 took 1.55 ms.
"""
import torch
import torch.nn as nn

OP_CATEGORY = "conv_epilogue"
batch_size = 16
in_channels = 128
out_channels = 128
height = 112
width = 112
SMALL_SIZES = {"batch_size": 2, "in_channels": 5, "out_channels": 7, "height": 9, "width": 11}


class Model(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def get_inputs():
    return [torch.rand(batch_size, in_channels, height, width)]


def get_init_inputs():
    return [in_channels, out_channels]
