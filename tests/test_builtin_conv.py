"""The Triton implicit-GEMM convolution (agent/builtin/plans/conv_triton.py) and the direct
depthwise one (conv_depthwise.py), checked through the real evaluator in the Triton
interpreter: every conv op, plain and transposed, with the stride, padding, dilation, groups,
output padding and bias variants KernelBench uses, at small odd sizes so every tile edge is
masked.

    pytest -q tests/test_builtin_conv.py
"""
from dataclasses import replace

import pytest

from agent.builtin import BuiltinPolicy, search
from agent.builtin.plans import conv_depthwise
from agent.builtin.policy import make_plan
from tests.builtin_helpers import EXTRA, extra_problem
from tools.records import EvalStatus

# name -> (forward body, inputs, init inputs (a, b), layers)
CONVS = {
    "conv1d_strided_padded": ("return self.conv(x)", "torch.randn(2, 3, 13)", "3, 5",
                              "self.conv = nn.Conv1d(a, b, 4, stride=2, padding=1)"),
    "conv1d_dilated_no_bias": ("return self.conv(x)", "torch.randn(2, 4, 17)", "4, 6",
                               "self.conv = nn.Conv1d(a, b, 3, dilation=3, bias=False)"),
    "conv2d_asymmetric": ("return self.conv(x)", "torch.randn(2, 3, 9, 7)", "3, 5",
                          "self.conv = nn.Conv2d(a, b, (3, 2), stride=(2, 1), padding=(1, 2))"),
    "conv2d_grouped_dilated": ("return self.conv(x)", "torch.randn(1, 4, 7, 9)", "4, 6",
                               "self.conv = nn.Conv2d(a, b, 3, padding=2, dilation=2, groups=2)"),
    "conv2d_depthwise": ("return self.conv(x)", "torch.randn(2, 6, 9, 8)", "6, 6",
                         "self.conv = nn.Conv2d(a, b, 3, stride=2, padding=1, groups=6)"),
    "conv3d_asymmetric": ("return self.conv(x)", "torch.randn(1, 2, 5, 6, 7)", "2, 3",
                          "self.conv = nn.Conv3d(a, b, (3, 2, 2), stride=(1, 2, 1), padding=(1, 0, 1))"),
    "conv_transpose1d_dilated": ("return self.conv(x)", "torch.randn(2, 3, 9)", "3, 4",
                                 "self.conv = nn.ConvTranspose1d(a, b, 3, stride=3, padding=1, dilation=2)"),
    "conv_transpose2d_grouped": ("return self.conv(x)", "torch.randn(2, 4, 5, 7)", "4, 6",
                                 "self.conv = nn.ConvTranspose2d(a, b, (3, 2), stride=(2, 3), padding=(1, 0), "
                                 "output_padding=(1, 2), dilation=(1, 2), groups=2)"),
    "conv_transpose3d_no_bias": ("return self.conv(x)", "torch.randn(1, 2, 3, 4, 5)", "2, 3",
                                 "self.conv = nn.ConvTranspose3d(a, b, 3, stride=2, padding=1, output_padding=1, "
                                 "bias=False)"),
    "conv2d_channel_scalar_chain": ("x = torch.tanh(self.conv(x) - 0.5)\n        return x * self.scale + self.shift",
                                    "torch.rand(2, 3, 10, 11)", "3, 8",
                                    "self.conv = nn.Conv2d(a, b, 3)\n        "
                                    "self.scale = nn.Parameter(torch.randn(b, 1, 1))\n        "
                                    "self.shift = nn.Parameter(torch.randn(1))"),
}
# level-2 shapes of work from tests/builtin_helpers.py where the convolution has company
MIXED = ["conv_transpose3d_clamp", "conv_groupnorm_mean"]
# one input channel a group (KernelBench level 1, 82-86): the direct kernel
DEPTHWISE = {
    "depthwise2d_strided_padded": CONVS["conv2d_depthwise"],
    "depthwise2d_multiplier_dilated_chain": (
        "return torch.relu(self.conv(x)) * self.scale + x.mean()", "torch.randn(2, 3, 11, 9)", "3, 6",
        "self.conv = nn.Conv2d(a, b, (3, 2), padding=(2, 1), dilation=(2, 3), groups=3)\n        "
        "self.scale = nn.Parameter(torch.randn(b, 1, 1))"),
    "depthwise1d_no_bias": ("return self.conv(x)", "torch.randn(3, 4, 20)", "4, 4",
                            "self.conv = nn.Conv1d(a, b, 5, stride=3, padding=2, groups=4, bias=False)"),
    "depthwise3d_asymmetric": ("return self.conv(x) - 1.0", "torch.randn(1, 2, 5, 6, 7)", "2, 2",
                               "self.conv = nn.Conv3d(a, b, (2, 3, 1), stride=(1, 2, 1), padding=(1, 0, 0), groups=2)"),
    "depthwise_separable": ("return self.pointwise(self.depthwise(x))", "torch.randn(2, 3, 8, 8)", "3, 5",
                            "self.depthwise = nn.Conv2d(a, a, 3, padding=1, groups=a, bias=False)\n        "
                            "self.pointwise = nn.Conv2d(a, b, 1, bias=False)"),
}


def triton_source(problem, direct: int = 0) -> str:
    plan = make_plan(problem)
    assert plan.error is None, plan.error
    config = replace(search.default_config(list(plan.stages), plan.graph), conv_library=False, conv_direct=direct)
    return BuiltinPolicy().source(problem, config)


def spec(name: str) -> tuple:
    if name in CONVS or name in DEPTHWISE:
        forward, inputs, init, layers = {**CONVS, **DEPTHWISE}[name]
        return forward, inputs, init, None, layers
    return EXTRA[name]


@pytest.mark.parametrize("name", list(CONVS) + MIXED)
def test_triton_convolution_is_correct_in_the_interpreter(name, tmp_path, evaluator):
    problem = extra_problem(tmp_path, name, spec(name))
    source = triton_source(problem)
    assert "tl.dot(" in source and "F.conv" not in source
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


@pytest.mark.parametrize("layout", [conv_depthwise.TILED, conv_depthwise.FLAT])
@pytest.mark.parametrize("name", list(DEPTHWISE))
def test_a_depthwise_convolution_is_a_direct_kernel_and_correct(name, layout, tmp_path, evaluator):
    problem = extra_problem(tmp_path, name, spec(name))
    source = triton_source(problem, direct=layout)
    assert "for kw in tl.static_range(KW)" in source and "F.conv" not in source
    assert ("BLOCK_H: tl.constexpr" in source) == (layout == conv_depthwise.TILED)
    assert ("tl.dot(" in source) == (name == "depthwise_separable")     # its pointwise conv is a GEMM
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


def test_the_search_starts_a_lone_depthwise_convolution_tiled_then_flat_then_the_gemm(tmp_path):
    problem = extra_problem(tmp_path, "depthwise1d_no_bias", spec("depthwise1d_no_bias"))
    plan = make_plan(problem)
    space = search.space_for(list(plan.stages), plan.graph, True, False)
    assert space.start.conv_library is False and space.start.conv_direct == conv_depthwise.TILED
    flat = search.neighbours(space.start, space)[0]
    assert flat == replace(space.start, conv_direct=conv_depthwise.FLAT)
    assert search.neighbours(flat, space)[0] == replace(space.start, conv_direct=0)
    assert "tl.dot(" in BuiltinPolicy().source(problem, replace(space.start, conv_direct=0))


def test_a_lone_convolution_becomes_a_triton_implicit_gemm(tmp_path):
    problem = extra_problem(tmp_path, "conv2d_asymmetric", spec("conv2d_asymmetric"))
    plan = make_plan(problem)
    assert plan.error is None
    config = search.default_config(list(plan.stages), plan.graph)
    assert config.conv_library is False
    source = BuiltinPolicy().source(problem, config)
    assert "tl.dot(" in source and 'input_precision="ieee"' in source and "F.conv" not in source


def test_layers_that_differ_only_in_their_parameters_share_one_kernel(tmp_path, evaluator):
    twice = ("return self.second(self.first(x))", "torch.randn(1, 3, 9, 9)", "3, 3", None,
             "self.first = nn.Conv2d(a, b, 3, padding=1)\n        self.second = nn.Conv2d(a, b, 3, stride=2)")
    problem = extra_problem(tmp_path, "two_convs", twice)
    source = triton_source(problem)
    assert source.count("@triton.jit") == 1 and "stride=(2, 2)" in source
    assert evaluator.evaluate(problem, source).status is EvalStatus.CORRECT
