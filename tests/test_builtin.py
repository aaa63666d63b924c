"""The built-in policy on CPU (Triton interpreter): every suite problem in the supported
categories gets a kernel the evaluator marks correct, its turns open with the analysis,
a session driven through a real Toolbox and SQLite store ends with an accepted submit,
and the search and the policy are deterministic for a given history.

    pytest -q tests/test_builtin.py
"""
import json
from dataclasses import replace

import pytest
import torch

from agent.builtin import BuiltinPolicy
from agent.builtin.analysis import Work, flops, launch_bound
from agent.builtin.capture import capture
from agent.builtin.partition import StageKind
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from agent.builtin.search import Space, neighbours, next_config, space_for
from agent.builtin.torch_call import torch_call
from agent.policy import Attempt, Backend, TurnInput, has_analysis
from tests.conftest import PROBLEMS
from tools.device import DeviceInfo, detect
from tools.history import HistoryStore, Origin
from tools.problems import load_problem
from tools.records import EvalStatus, Mode
from tools.toolbox import Toolbox

# problem -> the stage families its plan uses (attention is not built in)
SUPPORTED = {
    "01_scale_bias_relu_chain": {"pointwise"}, "02_gelu_tanh": {"pointwise"}, "03_silu_hardtanh": {"pointwise"},
    "04_softmax_rows": {"rows"}, "05_log_softmax_rows": {"rows"}, "06_layernorm": {"rows"}, "07_rmsnorm": {"rows"},
    "08_groupnorm": {"group_norm"}, "09_sum_reduction": {"reduce"}, "10_argmax_dim": {"reduce"},
    "11_cumsum": {"rows"}, "13_smooth_l1_loss": {"rows"}, "14_matmul_square": {"matmul"},
    "15_matmul_transposed_b": {"view", "matmul"}, "16_batched_matmul": {"matmul"}, "17_matvec": {"view", "rows"},
    "18_linear_bias_relu": {"matmul"}, "19_linear_gelu_scale": {"matmul"}, "20_conv2d_bias_relu": {"conv"},
    "21_conv1x1_residual": {"conv"}, "24_tiny_mlp": {"matmul", "rows"},
    "12_cross_entropy_loss": {"view", "rows", "total"},
    # captured by torch.export (sizes as Python numbers); the mask is built on the inputs' device
    "23_causal_attention": {"view", "matmul", "pointwise", "torch", "rows"},
    "22_sdpa_attention": {"view", "matmul", "rows"},    # attention as its definition (rewrite.py)
}
UNSUPPORTED = {  # forward, inputs, what the analysis must name
    "causal_sdpa": ("return F.scaled_dot_product_attention(x, x, x, is_causal=True)", "torch.rand(2, 5, 8)",
                    "no op of this forward has a Triton plan"),
}
CPU = DeviceInfo(Mode.CPU_INTERPRETER, "cpu", None)
GPU = DeviceInfo(Mode.GPU, "NVIDIA H100 80GB HBM3", 0)     # decision logic only: nothing runs on it
H100_CEILINGS = (3.0e12, 5.0e13)

DIAG_PROBLEM = '''"""diag(A) @ B (KernelBench level 1 problem 12's shape of work)."""
import torch
import torch.nn as nn

OP_CATEGORY = "matmul"
N = 4096
M = 4096
SMALL_SIZES = {"N": 37, "M": 45}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A, B):
        return torch.diag(A) @ B


def get_inputs():
    return [torch.rand(N), torch.rand(N, M)]


def get_init_inputs():
    return []
'''


def small(name: str):
    return load_problem(PROBLEMS / f"{name}.py", size="small")


def first_turn(policy, problem, device=CPU, attempts=()):
    return policy.turn(TurnInput(problem, Backend.TRITON, device, [], Toolbox.schemas(), list(attempts), 0))


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_emitted_kernel_is_correct_in_the_interpreter(name, evaluator):
    problem = small(name)
    plan = make_plan(problem)
    assert plan.error is None
    assert {s.kind.value for s in plan.stages} == SUPPORTED[name]
    source = BuiltinPolicy().source(problem, Config())
    assert "@triton.jit" in source and "class ModelNew(nn.Module)" in source
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]
    assert "no_custom_kernel" not in [f.value for f in result.flags]


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_problems_are_reported_plainly(name, tmp_path):
    forward, inputs, reason = UNSUPPORTED[name]
    turn = first_turn(BuiltinPolicy(), extra_problem(tmp_path, name, (forward, inputs, "0, 0", None, "pass")))
    assert has_analysis(turn.text) and not turn.tool_calls
    assert "Not supported by the built-in plans" in turn.text and reason in turn.text


@pytest.mark.parametrize("name", sorted(PROBLEMS.glob("*.py")), ids=lambda p: p.stem)
def test_every_turn_opens_with_the_analysis(name):
    turn = first_turn(BuiltinPolicy(), load_problem(name, size="small"))
    assert has_analysis(turn.text)
    if turn.tool_calls:
        assert "Roofline: no GPU here" in turn.text and "Op graph" in turn.text
        call = turn.tool_calls[0]
        assert call.name == "benchmark" and "class ModelNew" in json.loads(call.arguments)["code"]


def test_diagonal_product_becomes_a_row_scaling(tmp_path, evaluator):
    path = tmp_path / "diag_matmul.py"
    path.write_text(DIAG_PROBLEM)
    problem = load_problem(path, size="small")
    plan = make_plan(problem)
    assert [s.kind for s in plan.stages] == [StageKind.VIEW, StageKind.POINTWISE] and plan.notes
    assert "tl.dot" not in BuiltinPolicy().source(problem, Config())
    assert evaluator.evaluate(problem, BuiltinPolicy().source(problem, Config())).status is EvalStatus.CORRECT


EXTRA = {  # KernelBench level-2 shapes of work beyond our suite: forward body, inputs, init inputs, stages
    "conv_sub_tanh_scale": ("x = torch.tanh(self.conv(x) - 0.5)\n        return x * self.scale",
                            "torch.rand(2, 3, 10, 12)", "3, 8", ["conv"],
                            "self.conv = nn.Conv2d(a, b, 3)\n        self.scale = nn.Parameter(torch.randn(b, 1, 1))"),
    "gemm_sigmoid_sum": ("return torch.sigmoid(self.linear(x)).sum(dim=1, keepdim=True)", "torch.rand(17, 40)", "40, 30",
                         ["matmul", "rows"], "self.linear = nn.Linear(a, b)"),
    "conv_groupnorm_mean": ("return torch.relu(self.gn(self.conv(x))).mean(dim=1)", "torch.rand(2, 4, 7, 9)", "4, 8",
                            ["conv", "group_norm", "reduce"],
                            "self.conv = nn.Conv2d(a, b, 3, padding=1)\n        self.gn = nn.GroupNorm(2, b)"),
    "groupnorm_scale_sigmoid": ("return torch.sigmoid(self.gn(x) * self.scale + 0.5)", "torch.randn(2, 6, 5, 7)", "6, 0",
                                ["group_norm"], "self.gn = nn.GroupNorm(3, a)\n        "
                                "self.scale = nn.Parameter(torch.randn(a, 1, 1))"),
    "max_indices": ("return torch.max(x, dim=1)[1]", "torch.rand(3, 50, 6)", "0, 0", ["reduce"], "pass"),
    "cumprod_rows": ("return torch.cumprod(x + 0.5, dim=1)", "torch.rand(5, 40)", "0, 0", ["rows"], "pass"),
    "frobenius_normalise": ("return x / torch.norm(x, p='fro')", "torch.randn(3, 7, 50)", "0, 0",
                            ["total", "pointwise"], "pass"),
    "mean_squared_error": ("return F.mse_loss(x, torch.zeros_like(x) + 0.5)", "torch.rand(13, 301)", "0, 0",
                           ["torch", "total"], "pass"),
    # ops with no Triton plan stay in PyTorch as written; what follows them is a Triton epilogue
    "tensor_indexing": ("return x[:, 0] * 2.0", "torch.rand(3, 50, 6)", "0, 0", ["torch"], "pass"),
    "odd_broadcast": ("x = torch.min(self.linear(x), dim=1, keepdim=True)[0]\n        return x + self.bias",
                      "torch.rand(6, 10)", "10, 4", ["matmul", "rows", "torch"],   # L2-75: (N, 1) + (1, C, 1, 1)
                      "self.linear = nn.Linear(a, b)\n        self.bias = nn.Parameter(torch.randn(1, b, 1, 1))"),
    "scalar_epilogue": ("return torch.dist(x, x.flip(0)) / 3.0", "torch.rand(5, 7)", "0, 0", ["torch", "torch"],
                        "pass"),   # a rank-0 result from a kept op, then an epilogue
    "conv_transpose3d_clamp": ("return torch.clamp(self.conv(x), min=-0.2) / 2.0", "torch.rand(2, 3, 4, 5, 3)",
                               "3, 4", ["conv"],
                               "self.conv = nn.ConvTranspose3d(a, b, 3, stride=2, padding=1, output_padding=1)"),
    "conv1d_batchnorm_tanh": ("return torch.tanh(self.bn(self.conv(x)))", "torch.rand(4, 3, 30)", "3, 6",
                              ["conv", "batch_norm"], "self.conv = nn.Conv1d(a, b, 3)\n        self.bn = nn.BatchNorm1d(b)"),
    # batch norm with the batch's statistics (training mode), its chain fused; eval mode reads the running ones
    "batchnorm_scale_relu": ("return torch.relu(self.bn(x) * self.scale)", "torch.rand(3, 5, 7, 9)", "5, 0",
                             ["batch_norm"], "self.bn = nn.BatchNorm2d(a, momentum=0.3)\n        "
                             "nn.init.normal_(self.bn.weight)\n        self.scale = nn.Parameter(torch.randn(a, 1, 1))"),
    "batchnorm3d_no_affine": ("return self.bn(x - 0.5)", "torch.rand(2, 4, 3, 5, 6)", "4, 0", ["pointwise", "batch_norm"],
                              "self.bn = nn.BatchNorm3d(a, affine=False)"),
    "maxpool_mish": ("return F.mish(self.pool(self.conv(x) - 0.5))", "torch.rand(2, 3, 11, 9)", "3, 5",
                     ["conv", "pool"], "self.conv = nn.Conv2d(a, b, 3)\n        self.pool = nn.MaxPool2d(2)"),
    # pooling (KernelBench level 1 problems 41-46): odd sizes, so windows hang over every edge
    "maxpool1d_dilated_ceil": ("return self.pool(x)", "torch.randn(2, 3, 29)", "0, 0", ["pool"],
                               "self.pool = nn.MaxPool1d(4, stride=3, padding=2, dilation=2, ceil_mode=True)"),
    "maxpool2d_strided": ("return self.pool(x)", "torch.randn(2, 3, 13, 11)", "0, 0", ["pool"],
                          "self.pool = nn.MaxPool2d((3, 2), stride=(2, 1), padding=1)"),
    "maxpool3d_functional": ("return F.max_pool3d(x, 3, 2, 1, 2)", "torch.randn(2, 3, 9, 10, 11)", "0, 0", ["pool"],
                             "pass"),
    "avgpool2d_padded": ("return self.pool(x)", "torch.randn(2, 3, 13, 11)", "0, 0", ["pool"],
                         "self.pool = nn.AvgPool2d(3, stride=2, padding=1)"),
    "avgpool2d_padding_excluded": ("return self.pool(x)", "torch.randn(2, 3, 13, 11)", "0, 0", ["pool"],
                                   "self.pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)"),
    "avgpool1d_ceil": ("return F.avg_pool1d(x, 4, 3, 1, True)", "torch.randn(2, 3, 30)", "0, 0", ["pool"], "pass"),
    "avgpool3d": ("return self.pool(x)", "torch.randn(2, 3, 7, 8, 9)", "0, 0", ["pool"], "self.pool = nn.AvgPool3d(2)"),
    "maxpool_relu_scale": ("return torch.relu(self.pool(x) - 0.5) * self.scale", "torch.rand(2, 5, 13, 11)", "0, 5",
                           ["pool"], "self.pool = nn.MaxPool2d(3, 2)\n        self.scale = nn.Parameter(torch.randn(b, 1, 1))"),
    "avgpool_stored_twice": ("p = self.pool(x)\n        return torch.relu(p) * p.sum(dim=-1, keepdim=True)",
                             "torch.randn(2, 3, 9, 9)", "0, 0", ["pool", "rows"], "self.pool = nn.AvgPool2d(2, 1)"),
    # what the pool plan leaves to PyTorch: indices, a divisor override
    "maxpool_indices": ("return self.pool(x)[0] * 2.0", "torch.rand(2, 3, 9, 9)", "0, 0", ["torch", "torch"],
                        "self.pool = nn.MaxPool2d(2, return_indices=True)"),
    "avgpool_divisor_override": ("return torch.relu(F.avg_pool2d(x, 3, 2, 1, divisor_override=4))",
                                 "torch.randn(2, 3, 9, 9)", "0, 0", ["torch"], "pass"),
    # softmax and logsumexp over the channels, held whole per position, the chain fused
    "channel_softmax_scale": ("return torch.softmax(x, dim=1) * self.scale", "torch.rand(2, 5, 4, 6)", "0, 5",
                              ["reduce"], "self.scale = nn.Parameter(torch.randn(b, 1, 1))"),
    "channel_log_softmax": ("return torch.log_softmax(x - 0.5, dim=1).tanh()", "torch.randn(3, 37, 9)", "0, 0",
                            ["pointwise", "reduce"], "pass"),
    "channel_logsumexp_relu": ("return torch.relu(torch.logsumexp(x, dim=1, keepdim=True) - 1.0)",
                               "torch.randn(2, 7, 3, 5, 4)", "0, 0", ["reduce"], "pass"),
    # an epilogue a strided reduction cannot index (a per-channel value) opens its own kernel
    "channel_mean_plus_bias": ("return x.mean(dim=2, keepdim=True) + self.scale", "torch.rand(2, 5, 4, 6)", "0, 5",
                               ["reduce", "pointwise"], "self.scale = nn.Parameter(torch.randn(b, 1, 1))"),
    "plane_centering": ("return x - x.mean(dim=(2, 3), keepdim=True)", "torch.randn(2, 5, 4, 6)", "0, 0",
                        ["torch", "pointwise"], "pass"),
    "shape_unpack_softmax": ("b, c, h, w = x.shape\n        return torch.softmax(x.view(b, c, -1), dim=2).view(b, c, h, w)",
                             "torch.randn(2, 3, 4, 5)", "0, 0",
                             ["torch"] * 5 + ["view", "rows", "view"], "pass"),
    "exclusive_cumsum": ("c = torch.cumsum(x.narrow(dim=1, start=0, length=x.size(1) - 1), dim=1)\n        "
                         "return torch.cat((torch.zeros_like(x.select(1, 0).unsqueeze(1)), c), dim=1)",
                         "torch.rand(6, 37)", "0, 0", ["view", "torch", "torch", "rows", "torch", "view", "torch", "torch"],
                         "pass"),
    "gemm_batchnorm_relu": ("return torch.relu(self.bn(self.linear(x)))", "torch.randn(16, 40)", "40, 24",
                            ["matmul", "torch"], "self.linear = nn.Linear(a, b)\n        self.bn = nn.BatchNorm1d(b)"),
    # a keepdim reduction over channels, broadcast back over them (KernelBench level 1 RMSNorm)
    "channel_rms_norm": ("return x / torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-5)",
                         "torch.rand(2, 5, 4, 6)", "0, 0", ["pointwise", "reduce", "pointwise"], "pass"),
    # KernelBench level 1 problem 11's contraction: a matrix product of A's rows
    "einsum_rows_times_matrix": ("return torch.einsum('bijl,lk->bijk', x, self.w)", "torch.rand(2, 3, 5, 24)", "24, 20",
                                 ["view", "matmul", "view"], "self.w = nn.Parameter(torch.randn(a, b))"),
    # review cases: each must plan and be correct (per-channel values only line up with dim 1,
    # an unbatched instance norm stays in PyTorch, a norm's value may be used after its chain)
    "dim2_softmax_channel_scale": ("return torch.softmax(x, dim=2) * self.scale", "torch.rand(2, 3, 5, 4)", "0, 3",
                                   ["reduce", "pointwise"], "self.scale = nn.Parameter(torch.randn(b, 1, 1))"),
    "long_channel_softmax": ("return torch.relu(torch.softmax(x, dim=1) - 1e-3)", "torch.rand(2, 1100, 3)", "0, 0",
                             ["torch"], "pass"),
    "unbatched_instance_norm": ("return self.inorm(x) * 2.0", "torch.rand(3, 6, 5)", "3, 0", ["torch"],
                                "self.inorm = nn.InstanceNorm2d(a)"),
    "groupnorm_used_twice": ("y = self.gn(x)\n        return torch.relu(y) + torch.softmax(y, -1)",
                             "torch.randn(2, 4, 3, 5)", "4, 0", ["group_norm", "rows"], "self.gn = nn.GroupNorm(2, a)"),
    "batchnorm_last_dim_weight": ("return self.bn(x) * self.w", "torch.rand(2, 3, 4, 5)", "3, 5",
                                  ["batch_norm", "pointwise"],
                                  "self.bn = nn.BatchNorm2d(a)\n        self.w = nn.Parameter(torch.randn(b))"),
    "channel_normalised_total": ("return (x / x.mean(1, keepdim=True)).sum()", "torch.rand(2, 3, 4, 5)", "0, 0",
                                 ["reduce", "pointwise", "total"], "pass"),
    "layer_norm_bias_only": ("return F.layer_norm(x, (20,), bias=self.b)", "torch.randn(3, 20)", "20, 0", ["rows"],
                             "self.b = nn.Parameter(torch.randn(a))"),
    # a linear reduction over a GEMM's output features, folded into its weights (KernelBench level 2
    # problems 14, 18, 51 and 98)
    "gemm_divide_sum_scale": ("return torch.sum(torch.matmul(x, self.w.T) / 2, dim=1, keepdim=True) * 1.5",
                              "torch.rand(9, 40)", "40, 24", ["reduce", "rows"],
                              "self.w = nn.Parameter(torch.randn(b, a))"),
    "linear_affine_mean_gelu_residual": ("y = torch.mean(self.linear(x) * 3.0 - self.v + 0.25, dim=1, keepdim=True)"
                                         "\n        return F.gelu(y) + x",
                                         "torch.rand(9, 40)", "40, 24", ["rows", "reduce", "rows"],
                                         "self.linear = nn.Linear(a, b)\n        self.v = nn.Parameter(torch.randn(b))"),
    "linear_sum_no_keepdim": ("return self.linear(x).sum(-1)", "torch.randn(9, 40)", "40, 24",
                              ["rows", "reduce", "rows", "view"],
                              "self.linear = nn.Linear(a, b)"),
    "linear_avgpool_gelu_max": ("y = self.pool(self.linear(x).unsqueeze(1)).squeeze(1)\n        "
                                "return torch.amax(F.gelu(y) * 2.0, dim=1)", "torch.randn(9, 40)", "40, 24",
                                ["view", "reduce", "view", "rows", "matmul", "rows"],
                                "self.linear = nn.Linear(a, b)\n        self.pool = nn.AvgPool1d(4)"),
    # a mean or sum over every output position of a convolution, folded into tap sums and a GEMM
    # (KernelBench level 2 problems 42 and 44); strides, padding and dilation move which inputs a tap reads
    "conv_transpose_scale_global_mean": ("return torch.mean(self.conv(x) * 0.5, dim=[2, 3], keepdim=True)",
                                         "torch.rand(2, 3, 7, 6)", "3, 5",
                                         ["view", "pointwise", "tap_sums", "view", "view", "view", "matmul", "view"],
                                         "self.conv = nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, "
                                         "output_padding=1)"),
    "conv_strided_dilated_mean_bias": ("return (self.conv(x) - self.v).mean(dim=(-2, -1)) + 1.0",
                                       "torch.randn(2, 3, 11, 9)", "3, 4",
                                       ["view", "view", "pointwise", "tap_sums", "view", "view", "matmul", "view",
                                        "pointwise"],
                                       "self.conv = nn.Conv2d(a, b, 3, stride=2, padding=1, dilation=2)\n        "
                                       "self.v = nn.Parameter(torch.randn(b, 1, 1))"),
    "conv3d_sum_over_positions": ("return self.conv(x).sum(dim=(2, 3, 4))", "torch.randn(2, 3, 5, 6, 7)", "3, 4",
                                  ["tap_sums", "view", "view", "matmul", "view"],
                                  "self.conv = nn.Conv3d(a, b, (2, 3, 2), stride=(1, 2, 3), padding=(1, 0, 1), "
                                  "bias=False)"),
    "conv_transpose1d_dilated_mean": ("return torch.relu(self.conv(x).mean(-1))", "torch.randn(3, 4, 10)", "4, 6",
                                      ["view", "tap_sums", "view", "view", "view", "matmul", "view", "pointwise"],
                                      "self.conv = nn.ConvTranspose1d(a, b, 3, stride=3, padding=2, dilation=2)"),
    # ... or over its first spatial dim: tap sums of input slices, then a convolution of one dim less
    # (KernelBench level 2 problem 13)
    "conv_transpose3d_depth_mean_softmax": ("y = torch.mean(self.conv(x), dim=2, keepdim=True) + self.v\n        "
                                            "return torch.tanh(torch.softmax(y, dim=1)) * 2.0",
                                            "torch.rand(2, 3, 5, 6, 4)", "3, 4",
                                            ["view", "tap_sums", "view", "view", "view", "conv", "view", "pointwise",
                                             "reduce"],
                                            "self.conv = nn.ConvTranspose3d(a, b, 3, stride=(2, 1, 1), padding=1, "
                                            "output_padding=(1, 0, 0))\n        "
                                            "self.v = nn.Parameter(torch.randn(1, b, 1, 1, 1))"),
    "conv3d_dilated_depth_sum": ("return self.conv(x).sum(dim=2) * 0.5", "torch.randn(2, 3, 9, 5, 6)", "3, 4",
                                 ["view", "pointwise", "tap_sums", "view", "view", "conv", "view", "pointwise"],
                                 "self.conv = nn.Conv3d(a, b, (3, 2, 3), stride=(2, 1, 1), padding=(2, 1, 0), "
                                 "dilation=(2, 1, 1))"),
    "conv2d_height_mean": ("return self.conv(x - 0.5).mean(dim=-2)", "torch.randn(2, 3, 8, 7)", "3, 4",
                           ["pointwise", "view", "tap_sums", "view", "view", "conv", "view"],
                           "self.conv = nn.Conv2d(a, b, 3, stride=2, padding=1)"),
    # add/sub with alpha= and div with rounding_mode= are not their plain forms: kept in PyTorch, the rest fused
    "add_alpha_floor_divide": ("return torch.div(torch.add(x, 1.0, alpha=3.0), 2.0, rounding_mode='floor') * 2.0",
                               "torch.randn(4, 8)", "0, 0", ["torch", "torch"], "pass"),
    # steps with the GEMM's or the convolution's value second: c + G, c * G, c - G
    "gemm_value_second_sum": ("return (1.0 - 2.0 * self.linear(x) + self.v).sum(1)", "torch.randn(9, 40)", "40, 24",
                              ["rows", "reduce", "rows", "view"],
                              "self.linear = nn.Linear(a, b)\n        self.v = nn.Parameter(torch.randn(b))"),
    "conv_value_second_mean": ("return (self.v - 3.0 * self.conv(x)).mean(dim=(2, 3))", "torch.randn(2, 3, 7, 6)",
                               "3, 4", ["view", "pointwise", "view", "tap_sums", "view", "view", "matmul", "view"],
                               "self.conv = nn.Conv2d(a, b, 3, padding=1)\n        "
                               "self.v = nn.Parameter(torch.randn(b, 1, 1))"),
    "gemm_logsumexp": ("return torch.logsumexp(self.linear(x), dim=1, keepdim=True)", "torch.randn(9, 40)", "40, 24",
                       ["matmul", "rows"], "self.linear = nn.Linear(a, b)"),
}


@pytest.mark.parametrize("forward, layers", [
    ("y = self.linear(x)\n        return y.sum(1, keepdim=True) + y", "pass"),             # G is used again
    ("return (self.linear(x) * self.v).sum(1)", "self.v = nn.Parameter(torch.randn(b))"),  # per-column scale
    ("return torch.relu(self.linear(x)).sum(1)", "pass"),                                  # not linear
    ("return (self.linear(x) / 0.0).sum(1)", "pass"),                                      # infinities
    ("return (2.0 / self.linear(x)).sum(1)", "pass"),                                      # c / G
    ("return self.linear(x).sum(0)", "pass"),                                              # over the rows
    ("return self.pool(self.linear(x).unsqueeze(1)).squeeze(1)", "self.pool = nn.AvgPool1d(4, 2)"),  # overlaps
    ("return self.pool(self.linear(x).unsqueeze(1)).squeeze(1)", "self.pool = nn.AvgPool1d(7)"),  # 24 % 7 != 0
    ("return self.pool(self.linear(x).unsqueeze(1)).squeeze(1)", "self.pool = nn.MaxPool1d(4)"),
])
def test_gemm_folds_take_only_linear_reductions_of_the_output_features(forward, layers, tmp_path):
    layers = "self.linear = nn.Linear(a, b)" + ("" if layers == "pass" else "\n        " + layers)
    problem = extra_problem(tmp_path, "no_fold", (forward, "torch.randn(9, 40)", "40, 24", None, layers))
    plan = make_plan(problem)
    assert plan.error is None and StageKind.MATMUL in [s.kind for s in plan.stages]
    assert not [note for note in plan.notes if "output features" in note]


@pytest.mark.parametrize("forward, layer", [
    ("return self.conv(x).mean(dim=(2, 3))", "nn.Conv2d(a, b, 3, groups=3)"),                 # grouped
    ("return torch.relu(self.conv(x)).mean(dim=(2, 3))", "nn.Conv2d(a, b, 3)"),               # not linear
    ("return self.conv(x).mean(dim=3)", "nn.Conv2d(a, b, 3)"),                        # the last dim, not the first
    ("return self.conv(x).mean(dim=(1, 2, 3))", "nn.Conv2d(a, b, 3)"),                       # over the channels too
    ("y = self.conv(x)\n        return y.mean(dim=(2, 3), keepdim=True) * y", "nn.Conv2d(a, b, 3)"),  # used again
    ("return (self.conv(x) * x.mean()).mean(dim=(2, 3))", "nn.Conv2d(a, b, 3, padding=1)"),  # a tensor scale
])
def test_conv_folds_take_only_linear_means_over_positions(forward, layer, tmp_path):
    spec = (forward, "torch.randn(2, 3, 9, 8)", "3, 6", None, f"self.conv = {layer}")
    problem = extra_problem(tmp_path, "no_fold", spec)
    plan = make_plan(problem)
    assert plan.error is None and StageKind.CONV in [s.kind for s in plan.stages]
    assert not [note for note in plan.notes if "never written" in note]


@pytest.mark.parametrize("forward, layers", [
    ("return F.conv2d(x, self.w, self.b, 2, 1).mean((2, 3))", "conv"),           # settings by position
    ("return F.conv2d(x, self.w, bias=self.b, stride=2).mean((2, 3))", "conv"),   # a keyword bias
    ("return torch.add(self.conv(x), 1.0, alpha=3.0).mean((2, 3))", "module"),    # alpha scales the added value
    ("return torch.div(self.conv(x), 2.0, rounding_mode='floor').mean((2, 3))", "module"),   # not affine
    ("return self.conv(x).mean((2, 3), dtype=torch.float64)", "module"),
    ("return self.linear(x.flatten(1)).sum(1, dtype=torch.float64)", "linear"),
    ("return torch.sub(self.linear(x.flatten(1)), self.v, alpha=2.0).sum(1)", "linear"),
])
def test_folds_refuse_what_they_cannot_read_exactly(forward, layers, tmp_path):
    layers = {"conv": "self.w = nn.Parameter(torch.randn(b, a, 3, 3))\n        self.b = nn.Parameter(torch.randn(b))",
              "module": "self.conv = nn.Conv2d(a, b, 3)",
              "linear": "self.linear = nn.Linear(a * 90, b)\n        self.v = nn.Parameter(torch.randn(b))"}[layers]
    problem = extra_problem(tmp_path, "no_fold", (forward, "torch.randn(2, 3, 9, 10)", "3, 6", None, layers))
    assert not [note for note in make_plan(problem).notes if "never written" in note or "output features" in note]


LONE_FLIP = ("return torch.flip(x, dims=(1,))", "torch.rand(2, 3, 8, 8)", "0, 0", None, "pass")


def extra_problem(tmp_path, name: str, spec: tuple | None = None):
    forward, inputs, init, _, layers = spec or EXTRA[name]
    path = tmp_path / f"{name}.py"
    path.write_text(f"""import math\n\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass Model(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        {layers}

    def forward(self, x):
        {forward}


def get_inputs():
    return [{inputs}]


def get_init_inputs():
    return [{init}]
""")
    return load_problem(path)


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_level2_shapes_of_work(name, tmp_path, evaluator):
    problem = extra_problem(tmp_path, name)
    plan = make_plan(problem)
    assert plan.error is None and [s.kind.value for s in plan.stages] == EXTRA[name][3]
    result = evaluator.evaluate(problem, BuiltinPolicy().source(problem, Config()))
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


BATCHNORM_MODES = '''
import importlib.util, sys, torch
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
problem, candidate = load(sys.argv[1], "problem"), load(sys.argv[2], "candidate")
torch.manual_seed(42)
model = problem.Model(*problem.get_init_inputs())
torch.manual_seed(42)
new = candidate.ModelNew(*problem.get_init_inputs())
for step in range(2):                       # training mode: batch statistics, running stats updated
    x = torch.rand(3, 5, 7, 9) * (step + 1)
    torch.testing.assert_close(new(x), model(x), rtol=1e-4, atol=1e-5)
for name in ("running_mean", "running_var", "num_batches_tracked"):
    torch.testing.assert_close(getattr(new.bn, name), getattr(model.bn, name), rtol=1e-5, atol=1e-6)
model.eval(), new.eval()                    # eval mode: the running statistics
x = torch.rand(3, 5, 7, 9)
torch.testing.assert_close(new(x), model(x), rtol=1e-4, atol=1e-5)
print("same")
'''


def test_batch_norm_follows_the_module_in_training_and_eval_mode(tmp_path):
    """The evaluator runs models as built (training mode); this drives one candidate
    through two training steps and then eval mode, against the reference, in the
    interpreter: outputs, running statistics and the batch counter all match."""
    import os
    import subprocess
    import sys
    problem = extra_problem(tmp_path, "batchnorm_scale_relu")
    candidate = tmp_path / "candidate.py"
    candidate.write_text(BuiltinPolicy().source(problem, Config()))
    script = tmp_path / "modes.py"
    script.write_text(BATCHNORM_MODES)
    done = subprocess.run([sys.executable, str(script), str(problem.path), str(candidate)], capture_output=True,
                          text=True, env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-3000:]


TRIPLET = '''import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, margin):
        super().__init__()
        self.loss_fn = nn.TripletMarginLoss(margin=margin)

    def forward(self, anchor, positive, negative):
        return self.loss_fn(anchor, positive, negative)


def get_inputs():
    return [torch.rand(37, 50) * 0.5, torch.rand(37, 50), torch.rand(37, 50)]


def get_init_inputs():
    return [0.5]
'''


def test_triplet_margin_loss_is_two_row_programs_and_a_total(tmp_path, evaluator):
    path = tmp_path / "triplet.py"
    path.write_text(TRIPLET)
    problem = load_problem(path)
    plan = make_plan(problem)
    assert plan.error is None and [s.kind.value for s in plan.stages] == ["rows", "rows", "total"]
    result = evaluator.evaluate(problem, BuiltinPolicy().source(problem, Config()))
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


CROSS_ENTROPY = '''import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.loss = nn.CrossEntropyLoss(reduction="sum")

    def forward(self, logits, targets):
        return {forward}


def get_inputs():
    targets = torch.randint(0, 37, (29,))
    targets[::4] = -100     # the ignored class: no term, and not counted by the mean
    return [torch.randn(29, 37) * 3.0, targets]


def get_init_inputs():
    return []
'''


@pytest.mark.parametrize("forward", ["F.cross_entropy(logits, targets)", "self.loss(logits, targets)"])
def test_cross_entropy_is_a_row_program_and_two_totals(forward, tmp_path, evaluator):
    path = tmp_path / "cross_entropy.py"
    path.write_text(CROSS_ENTROPY.replace("{forward}", forward))
    problem = load_problem(path)
    plan = make_plan(problem)
    assert plan.error is None and [s.kind.value for s in plan.stages] == (
        ["view", "rows", "total", "total"] if forward.startswith("F.") else ["view", "rows", "total"])
    result = evaluator.evaluate(problem, BuiltinPolicy().source(problem, Config()))
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]
    weighted = tmp_path / "weighted.py"
    weighted.write_text(CROSS_ENTROPY.replace("{forward}", "F.cross_entropy(logits, targets, label_smoothing=0.1)"))
    assert "no op of this forward has a Triton plan" in make_plan(load_problem(weighted)).error   # kept in PyTorch


def test_ops_kept_in_pytorch_are_written_as_the_reference_wrote_them_and_named(tmp_path):
    problem = extra_problem(tmp_path, "gemm_batchnorm_relu")     # batch norm over (N, C): strided channels
    kept = [s.anchor for s in make_plan(problem).stages if s.kind is StageKind.TORCH]
    assert [n.kept.render(["y"]) for n in kept] == ["self.bn(y)"]
    assert "bn = self.bn(linear)  # kept in PyTorch" in BuiltinPolicy().source(problem, Config())
    turn = first_turn(BuiltinPolicy(), problem)
    assert "Kept in PyTorch as the reference wrote them (no Triton plan): `bn` (self.bn)" in turn.text


def test_pools_are_captured_with_pytorch_defaults_and_counted_per_tap(tmp_path):
    problem = extra_problem(tmp_path, "maxpool_mish")
    pool = next(s for s in make_plan(problem).stages if s.kind is StageKind.POOL)
    assert pool.anchor.attrs == {"dims": 2, "kernel": (2, 2), "stride": (2, 2), "padding": (0, 0), "dilation": (1, 1),
                                 "ceil_mode": False, "count_include_pad": True, "divisor_override": None,
                                 "return_indices": False}
    assert [n.op for n in pool.body] == ["mish"] and pool.anchor.kept.render(["y"]) == "self.pool(y)"
    graph = capture(problem)
    assert flops(graph.node("pool"), graph) == 4 * graph.node("pool").numel


def test_a_forward_with_nothing_for_triton_gets_no_kernel(tmp_path):
    turn = first_turn(BuiltinPolicy(), extra_problem(tmp_path, "lone_flip", LONE_FLIP))
    assert not turn.tool_calls and "no op of this forward has a Triton plan" in turn.text


def test_torch_call_renders_literals_and_refuses_what_has_no_source_form():
    class Padded(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.pad(x, (1, 2), value=float("-inf")).sum(dim=[0, 1]).to(torch.device("cpu"))

    pad, total, moved = [n for n in torch.fx.symbolic_trace(Padded()).graph.nodes
                         if n.op in ("call_function", "call_method")]
    assert torch_call(pad).render(["x"]) == "F.pad(x, (1, 2), mode='constant', value=float(\"-inf\"))"
    assert torch_call(total).refs == ("pad",) and torch_call(total).render(["p"]) == "p.sum(dim=[0, 1])"
    assert torch_call(moved) is None       # a torch.device object has no literal form


def test_max_over_a_dim_is_read_as_amax_and_argmax(tmp_path):
    problem = extra_problem(tmp_path, "max_indices")
    ops = [n.op for n in capture(problem).nodes]
    assert "argmax" in ops and "max" not in ops


def drive(policy, toolbox, problem, device, max_turns=6):
    """The agent's loop in miniature: run each turn's tool calls through the Toolbox."""
    attempts, turns = [], []
    for index in range(max_turns):
        turn = policy.turn(TurnInput(problem, Backend.TRITON, device, [], Toolbox.schemas(), list(attempts), index))
        turns.append(turn)
        assert has_analysis(turn.text)
        if not turn.tool_calls:
            return turns, attempts
        for call in turn.tool_calls:
            report = toolbox.call(call.name, json.loads(call.arguments))
            r = report.result
            attempts.append(Attempt(index, call.name, report.evaluation_id, json.loads(call.arguments)["code"],
                                    r.status, r.runtime_ms, r.speedup_vs_eager, r.speedup_vs_compile,
                                    tuple(f.value for f in r.flags), r.reason))
    raise AssertionError("the policy did not stop")


def test_session_through_a_real_toolbox_ends_with_an_accepted_submit(evaluator, tmp_path):
    problem = small("07_rmsnorm")
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    toolbox = Toolbox(problem, evaluator, store, session="builtin-test", origin=Origin("builtin", "builtin-0.1"))
    turns, attempts = drive(BuiltinPolicy(history=store), toolbox, problem, detect(force_cpu=True))
    assert [a.tool for a in attempts] == ["benchmark", "submit"]
    assert attempts[-1].status is EvalStatus.CORRECT
    assert store.submission("builtin-test") == attempts[-1].evaluation_id
    assert "speed was not measured" in turns[-1].text and not turns[-1].tool_calls


def test_policy_is_deterministic():
    problem = small("19_linear_gelu_scale")
    one, two = first_turn(BuiltinPolicy(), problem), first_turn(BuiltinPolicy(), problem)
    assert one == two


def attempt(policy, problem, config, speedup, tool="benchmark", status=EvalStatus.CORRECT):
    runtime = None if speedup is None else 1.0 / speedup
    return Attempt(1, tool, 1, policy.source(problem, config), status, runtime, speedup, speedup)


def test_gpu_search_keeps_winners_and_never_submits_a_slower_kernel():
    problem = small("01_scale_bias_relu_chain")
    policy = BuiltinPolicy(budget=3, ceilings=H100_CEILINGS)
    plan = policy.plan(problem)
    bound = launch_bound(Work.of(plan.graph, list(plan.stages)), H100_CEILINGS, list(plan.stages))
    start = space_for(list(plan.stages), plan.graph, True, bound).start    # at the small size: a CUDA graph
    first = first_turn(policy, problem, GPU)
    assert "Roofline on NVIDIA H100" in first.text
    assert json.loads(first.tool_calls[0].arguments)["code"] == policy.source(problem, start)
    slow = [attempt(policy, problem, start, 0.8)]
    second = first_turn(policy, problem, GPU, slow)
    assert second.tool_calls[0].name == "benchmark"
    tried = json.loads(second.tool_calls[0].arguments)["code"]
    slower = slow + [Attempt(1, "benchmark", 2, tried, EvalStatus.CORRECT, 2.0, 0.5, 0.5),
                     attempt(policy, problem, replace(start, block=512), 0.9)]
    verdict = first_turn(policy, problem, GPU, slower)
    assert not verdict.tool_calls and "Nothing beat the reference" in verdict.text
    faster = slow + [Attempt(1, "benchmark", 2, tried, EvalStatus.CORRECT, 0.5, 2.0, 1.1)]
    submit = first_turn(BuiltinPolicy(budget=2, ceilings=H100_CEILINGS), problem, GPU, faster)
    assert submit.tool_calls[0].name == "submit" and json.loads(submit.tool_calls[0].arguments)["code"] == tried


def test_fp32_gemm_with_a_chain_starts_on_cublas_and_measures_tl_dot_next(evaluator):
    """Both variants are correct in the interpreter; on a GPU the first benchmark is the
    cuBLAS product with a Triton epilogue, the second the all-`tl.dot` kernel, and a tile
    change (moot while the product is on cuBLAS) is never benchmarked as a new kernel."""
    problem = small("19_linear_gelu_scale")
    policy = BuiltinPolicy(budget=4, ceilings=H100_CEILINGS)
    plan = policy.plan(problem)
    bound = launch_bound(Work.of(plan.graph, list(plan.stages)), H100_CEILINGS, list(plan.stages))
    space = space_for(list(plan.stages), plan.graph, True, bound)
    assert space.start.cuda_graph is bound          # a launch-bound plan starts as a CUDA graph
    plain = replace(space.start, cuda_graph=False)  # what the interpreter can run
    library, dot = policy.source(problem, plain), policy.source(problem, replace(plain, gemm_library=False))
    assert space.start.gemm_library and "F.linear(" in library and "tl.dot" not in library and "tl.dot" in dot
    for source in (library, dot):
        assert evaluator.evaluate(problem, source).status is EvalStatus.CORRECT
    first = first_turn(policy, problem, GPU)
    assert json.loads(first.tool_calls[0].arguments)["code"] == policy.source(problem, space.start)
    assert "on cuBLAS" in first.text
    second = first_turn(policy, problem, GPU, [attempt(policy, problem, space.start, 1.1)])
    assert list(space.axes)[bound] == "gemm_library"     # after the CUDA-graph switch, when launch-bound
    assert json.loads(second.tool_calls[0].arguments)["code"] == (library if bound else dot)
    both = [attempt(policy, problem, space.start, 1.1), attempt(policy, problem, replace(space.start, gemm_library=False), 0.5)]
    both += [attempt(policy, problem, plain, 1.0)] if bound else []     # the graph's first neighbour, measured
    for _ in range(4 - len(both)):   # the rest of the budget changes the epilogue's launch, never only the moot tile
        nxt = json.loads(first_turn(policy, problem, GPU, both).tool_calls[0].arguments)["code"]
        assert nxt not in [a.code for a in both] + [library, dot] and "F.linear(" in nxt
        both.append(Attempt(1, "benchmark", 3, nxt, EvalStatus.CORRECT, 2.0, 0.5, 0.5))


@pytest.mark.parametrize("name", ["gemm_logsumexp", "gemm_batchnorm_relu"])
def test_a_bare_fp32_gemm_goes_to_cublas_when_a_triton_kernel_remains(name, tmp_path, evaluator):
    problem = extra_problem(tmp_path, name)
    plan = make_plan(problem)
    start = space_for(list(plan.stages), plan.graph, True, False).start
    source = BuiltinPolicy().source(problem, start)
    assert start.gemm_library and "F.linear(x, self.linear.weight, self.linear.bias)  # cuBLAS" in source
    assert "tl.dot" not in source and "@triton.jit" in source
    assert evaluator.evaluate(problem, source).status is EvalStatus.CORRECT


# row programs that walk their row in steps: forced with a short step on short rows, and
# taken by default past MAX_ROW (KernelBench level 1: softmax over 393216 columns, a layer
# norm over a whole sample, a matrix-vector product with K = 2**20)
WALKED = {
    "softmax": ("return torch.softmax(x, dim=1)", "torch.randn(3, 1000)", "0, 0", ["rows"], "pass"),
    "log_softmax_chain": ("return torch.log_softmax(x * 2.0, dim=-1) + 1.0", "torch.randn(3, 1000)", "0, 0",
                          ["rows"], "pass"),
    "layer_norm": ("return torch.relu(self.ln(x))", "torch.randn(3, 1000)", "1000, 0", ["rows"],
                   "self.ln = nn.LayerNorm(a)\n        nn.init.normal_(self.ln.weight)\n        "
                   "nn.init.normal_(self.ln.bias)"),
    "rms_norm": ("return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + 1e-5)", "torch.randn(3, 1000)", "0, 0",
                 ["rows"], "pass"),
    "logsumexp_relu": ("return torch.logsumexp(x, dim=1, keepdim=True).relu() * 2", "torch.randn(3, 1000)", "0, 0",
                       ["rows"], "pass"),
    "l2_normalise_plus_max": ("return x / torch.norm(x, p=2, dim=1, keepdim=True) + x.amax(dim=1, keepdim=True)",
                              "torch.randn(3, 1000)", "0, 0", ["rows", "rows"], "pass"),
    "sum_plus_min": ("return x.sum(dim=1) + x.amin(dim=1)", "torch.randn(3, 1000)", "0, 0",
                     ["rows", "rows", "pointwise"], "pass"),
    "matvec": ("return torch.matmul(x, self.v)", "torch.randn(4, 1000)", "1000, 0", ["view", "rows"],
               "self.v = nn.Parameter(torch.randn(a, 1))"),
    "instance_norm": ("return self.inorm(x)", "torch.rand(2, 3, 13, 11)", "3, 0", ["view", "rows", "view"],
                      "self.inorm = nn.InstanceNorm2d(a)"),
    "layer_norm_over_3_dims": ("return self.ln(x)", "torch.rand(2, 3, 7, 9)", "0, 0", ["view"] * 3 + ["rows", "view"],
                               "self.ln = nn.LayerNorm((3, 7, 9))\n        nn.init.normal_(self.ln.weight)\n        "
                               "nn.init.normal_(self.ln.bias)"),
}


@pytest.mark.parametrize("name", sorted(WALKED))
def test_a_row_program_can_walk_its_row(name, tmp_path, evaluator):
    problem = extra_problem(tmp_path, name, WALKED[name])
    plan = make_plan(problem)
    assert plan.error is None and [s.kind.value for s in plan.stages] == WALKED[name][3]
    source = BuiltinPolicy().source(problem, Config(row_block=128))
    assert "for start in range(0, n_cols, BLOCK_N)" in source and "BLOCK_N = 128" in source
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


def test_rows_longer_than_registers_hold_are_walked_by_default(tmp_path, evaluator):
    problem = extra_problem(tmp_path, "long_softmax", ("return torch.softmax(x, dim=1)", "torch.randn(2, 70001)",
                                                       "0, 0", ["rows"], "pass"))
    plan = make_plan(problem)
    space = space_for(list(plan.stages), plan.graph, True, False)
    assert space.start.row_block == 4096 and 0 in space.axes["row_block"]
    source = BuiltinPolicy().source(problem, space.start)
    assert "BLOCK_N = 4096" in source and evaluator.evaluate(problem, source).status is EvalStatus.CORRECT


def test_a_long_row_leaves_the_other_row_programs_whole(tmp_path, evaluator):
    problem = extra_problem(tmp_path, "long_and_short", (
        "y = torch.softmax(x, dim=1)\n        return y.sum() + torch.cumsum(y.view(2, 10000, 7), dim=2).sum()",
        "torch.randn(2, 70000)", "0, 0", None, "pass"))
    plan = make_plan(problem)
    assert plan.error is None and "cumsum over the row" in BuiltinPolicy().source(problem, space_for(
        list(plan.stages), plan.graph, True, False).start)


def test_scans_over_rows_longer_than_registers_hold_are_refused(tmp_path):
    problem = extra_problem(tmp_path, "long_cumsum", ("return torch.cumsum(x, dim=1).relu()", "torch.randn(2, 70001)",
                                                      "0, 0", None, "pass"))
    assert [(s.kind.value, s.anchor.op) for s in make_plan(problem).stages] == [("torch", "cumsum")]
    short = extra_problem(tmp_path, "cumsum", ("return torch.cumsum(x, dim=1)", "torch.randn(2, 71)", "0, 0", None,
                                               "pass"))
    plan = make_plan(short)
    assert "row_block" not in space_for(list(plan.stages), plan.graph, True, False).axes


def test_search_walks_to_neighbours_of_the_fastest():
    space = Space({"block": (512, 1024, 2048), "warps": (4, 8)}, Config(block=1024, warps=4))
    assert next_config(space, {}, 5) == space.start
    measured = {space.start: 2.0, Config(block=2048, warps=4): 1.0}
    assert next_config(space, measured, 5) == Config(block=2048, warps=8)
    assert next_config(space, measured, 0) is None
    assert neighbours(space.start, space) == [Config(block=2048), Config(block=512), Config(block=1024, warps=8)]


def test_history_counts_as_measured(tmp_path):
    """A configuration an earlier session timed is not benchmarked again; the search moves on."""
    problem = small("04_softmax_rows")
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    policy = BuiltinPolicy(history=store, ceilings=H100_CEILINGS)
    start_code = json.loads(first_turn(policy, problem, GPU).tool_calls[0].arguments)["code"]
    record_timed(store, problem, start_code, runtime_ms=1.0, speedup=1.2)
    again = BuiltinPolicy(history=store, ceilings=H100_CEILINGS)
    nxt = first_turn(again, problem, GPU)
    assert json.loads(nxt.tool_calls[0].arguments)["code"] != start_code
    assert first_turn(again, problem, GPU) == nxt


def record_timed(store, problem, code, runtime_ms, speedup):
    """Store an evaluation as a GPU run would have (data for the read API only)."""
    from tools.records import EvalResult
    result = EvalResult(status=EvalStatus.CORRECT, flags=[], reason="", phase=None, max_abs_error=0.0, rel_error=0.0,
                        trials_run=5, trials_passed=5, runtime_ms=runtime_ms, timing=None, eager_ms=runtime_ms * speedup,
                        compile_ms=None, speedup_vs_eager=speedup, speedup_vs_compile=None, device=GPU.name,
                        mode=Mode.GPU, size=problem.size, problem=problem.name, problem_hash=problem.hash,
                        candidate_hash="", sandbox="process", network_isolated=True, versions={}, lint_findings=[],
                        notes=[], log="", seconds=1.0)
    store.record(problem, code, result, Origin("builtin", "builtin-0.1"), "earlier-session")


def test_launch_bound_plans_start_as_a_cuda_graph_and_convolutions_never_do():
    """24_tiny_mlp (64 launches for 9 MB) starts replayed as one CUDA graph on a GPU; a
    small convolution is never called launch-bound (cuDNN's time is not the FLOP floor's)."""
    policy = BuiltinPolicy(ceilings=H100_CEILINGS)
    mlp = load_problem(PROBLEMS / "24_tiny_mlp.py")
    plan = policy.plan(mlp)
    assert launch_bound(Work.of(plan.graph, list(plan.stages)), H100_CEILINGS, list(plan.stages))
    turn = first_turn(policy, mlp, GPU)
    assert "replay_as_cuda_graph(" in json.loads(turn.tool_calls[0].arguments)["code"] and "Launch-bound" in turn.text
    conv = small("20_conv2d_bias_relu")
    plan = policy.plan(conv)
    work = Work.of(plan.graph, list(plan.stages))
    assert launch_bound(work, H100_CEILINGS) and not launch_bound(work, H100_CEILINGS, list(plan.stages))
    turn = first_turn(policy, conv, GPU)
    assert "replay_as_cuda_graph(" not in json.loads(turn.tool_calls[0].arguments)["code"]
    assert "no CUDA graph is tried" in turn.text
