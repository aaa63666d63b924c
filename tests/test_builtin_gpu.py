"""The built-in policy's folds and newer plans on a GPU (`pytest -m gpu`, on the device
machine): the tap-sum kernels and the folded GEMMs, walked rows split into segments, the online
softmax, the direct depthwise convolution in both layouts, the GRU's recurrence and the exact
fp32 GEMM with its B copied N-fastest, compiled by the real Triton
compiler, each correct through the evaluator (correctness only; speed is the batch runner's).

    pytest -q -m gpu tests/test_builtin_gpu.py
"""
from dataclasses import replace

import pytest

from agent.builtin import BuiltinPolicy
from agent.builtin.plans.common import Config
from agent.builtin.plans import conv_depthwise
from agent.builtin.policy import make_plan
from tests.builtin_helpers import EXTRA, extra_problem
from tests.test_builtin_conv import DEPTHWISE, triton_source
from tests.test_builtin_conv import spec as conv_spec
from tests.test_builtin_gru import CASES as GRUS, gru_problem
from tests.test_builtin_rows import WALKED
from tools.device import detect, pick_index
from tools.evaluator import EvalConfig, Evaluator
from tools.records import EvalStatus
from tools.sandbox.process import ProcessSandbox

pytestmark = pytest.mark.gpu      # skipped without CUDA, or failed: tests/conftest.py

FOLDED = ["conv_transpose_scale_global_mean", "conv_strided_dilated_mean_bias", "conv3d_sum_over_positions",
          "conv_transpose1d_dilated_mean", "conv_transpose3d_depth_mean_softmax", "conv3d_dilated_depth_sum",
          "conv2d_height_mean", "conv_value_second_mean", "gemm_divide_sum_scale", "linear_affine_mean_gelu_residual",
          "gemm_value_second_sum", "linear_avgpool_gelu_max"]


@pytest.fixture(scope="module")
def gpu_evaluator():
    with ProcessSandbox(pick_index()) as sandbox:   # before detect(): the fork server starts before CUDA
        yield Evaluator(sandbox, detect(), EvalConfig(timed=False))


@pytest.mark.parametrize("name", FOLDED)
def test_folded_kernels_are_correct_compiled(name, tmp_path, gpu_evaluator):
    problem = extra_problem(tmp_path, name)
    plan = make_plan(problem)
    assert plan.error is None and [s.kind.value for s in plan.stages] == EXTRA[name][3]
    for config in (Config(), replace(Config(), warps=8, block=256)):
        result = gpu_evaluator.evaluate(problem, BuiltinPolicy().source(problem, config))
        assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


@pytest.mark.parametrize("name", ["layer_norm", "softmax", "sum_plus_min", "l2_normalise_plus_max"])
def test_walked_rows_split_into_segments_and_online_softmax_are_correct_compiled(name, tmp_path, gpu_evaluator):
    problem = extra_problem(tmp_path, name, WALKED[name])
    for config in (Config(row_block=128, row_split=16), Config(row_block=128)):   # split; one program a row (online)
        result = gpu_evaluator.evaluate(problem, BuiltinPolicy().source(problem, config))
        assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


@pytest.mark.parametrize("name", list(DEPTHWISE))
def test_depthwise_convolutions_are_correct_compiled_in_both_layouts(name, tmp_path, gpu_evaluator):
    problem = extra_problem(tmp_path, name, conv_spec(name))
    for layout in (conv_depthwise.TILED, conv_depthwise.FLAT):
        result = gpu_evaluator.evaluate(problem, triton_source(problem, direct=layout))
        assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


@pytest.mark.parametrize("name", sorted(GRUS))
def test_grus_are_correct_compiled(name, tmp_path, gpu_evaluator):
    problem = gru_problem(tmp_path, name, *GRUS[name])
    for config in (Config(), Config(gru_steps=True, cuda_graph=True)):     # walking; a launch a step, replayed
        result = gpu_evaluator.evaluate(problem, BuiltinPolicy().source(problem, config))
        assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


@pytest.mark.parametrize("copy", [True, False])
def test_an_exact_fp32_gemm_of_a_transposed_b_is_correct_compiled(copy, tmp_path, gpu_evaluator):
    problem = extra_problem(tmp_path, "gemm_b_t", ("return x @ self.w.T", "torch.rand(300, 96)", "96, 80", ["matmul"],
                                                   "self.w = nn.Parameter(torch.randn(b, a))"))
    source = BuiltinPolicy().source(problem, Config(gemm_b_copy=copy))
    assert ("_n_major(" in source) is copy
    result = gpu_evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]
