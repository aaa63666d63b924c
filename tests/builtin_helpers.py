"""What the built-in policy's tests share: the CPU and H100 devices the turns are asked
for, a suite problem at its small size, a policy's first turn, and `EXTRA`, KernelBench
level-2 shapes of work beyond our suite, written out as problem files by `extra_problem`.

    problem = extra_problem(tmp_path, "gemm_logsumexp")     # or a spec of your own
    turn = first_turn(BuiltinPolicy(), problem)
"""
from agent.policy import Backend, TurnInput
from tests.conftest import PROBLEMS
from tools.device import DeviceInfo
from tools.problems import load_problem
from tools.records import Mode
from tools.toolbox import Toolbox


CPU = DeviceInfo(Mode.CPU_INTERPRETER, "cpu", None)


GPU = DeviceInfo(Mode.GPU, "NVIDIA H100 80GB HBM3", 0)     # decision logic only: nothing runs on it


H100_CEILINGS = (3.0e12, 5.0e13)


def small(name: str):
    return load_problem(PROBLEMS / f"{name}.py", size="small")


def first_turn(policy, problem, device=CPU, attempts=()):
    return policy.turn(TurnInput(problem, Backend.TRITON, device, [], Toolbox.schemas(), list(attempts), 0))


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
