"""Per-sample smooth-L1 (Huber, beta=1) loss: the mean over each row of the elementwise loss.

pred and target are (batch, dim) fp32; the output is (batch,). Full size 49152 x 4096
each (201M elements, 2 x 768 MB): eager writes the elementwise loss then reduces its
rows (~3.2 GB moved, ~1.2 ms on an H100); fused it is one read of both inputs. ~5 FLOPs
per element. Per-row, not one global mean: a single mean over 201M random elements is
the same for any two inputs to well within fp32 tolerance (the problem lint flags that
as degenerate: a constant would pass).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "loss"
batch_size = 49152
dim = 4096
SMALL_SIZES = {"batch_size": 7, "dim": 300}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, predictions, targets):
        return F.smooth_l1_loss(predictions, targets, reduction="none").mean(dim=1)


def get_inputs():
    return [torch.randn(batch_size, dim), torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
