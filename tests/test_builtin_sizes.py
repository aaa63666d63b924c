"""The built-in policy's kernels read their sizes from their inputs (issue 23 item 1): its kernel
for a suite problem, verified at the small size, holds at a second size set through the real
evaluator in the Triton interpreter. Before, problem 09's wrapper allocated
`torch.empty((3, 1, 33))`, problem 10's likewise, the attention problems reshaped to
`(6, 37, 64)` and built their causal mask as `torch.ones([37, 37])`."""
from dataclasses import replace

import pytest
import torch

from agent.builtin import BuiltinPolicy
from agent.builtin.ir import OpGraph, OpNode, Ref
from agent.builtin.plans.common import Config
from agent.builtin.plans.sizes import align, view_dims
from tests.builtin_helpers import small
from tools.records import EvalStatus, Flag


@pytest.mark.slow
@pytest.mark.parametrize("name", ["09_sum_reduction", "10_argmax_dim", "22_sdpa_attention"])
def test_the_builtin_kernel_holds_at_a_second_size(evaluator, name):
    problem = small(name)
    result = evaluator.evaluate(problem, BuiltinPolicy().source(problem, Config()),
                                replace(evaluator.config, second_size=True))
    assert result.status is EvalStatus.CORRECT and Flag.SIZE_SPECIALISED not in result.flags, result.notes
    assert result.second_size.holds, result.second_size.text()


def test_a_size_the_forward_reads_stays_read_on_the_export_path():
    source = BuiltinPolicy().source(small("23_causal_attention"), Config())
    assert "torch.ones([37, 37]" not in source and ".size(2)" in source      # the mask follows seq_len
    assert "reshape(6, 37" not in source and "torch.empty((" not in source


def test_reduction_outputs_are_shaped_from_the_input():
    source = BuiltinPolicy().source(small("09_sum_reduction"), Config())
    assert "torch.empty((*x.shape[:1], 1, *x.shape[2:])" in source and "(3, 1, 33)" not in source


def test_runs_of_equal_product_line_up_merges_and_splits():
    assert align((2, 3, 37, 64), (6, 37, 64)) == [([0, 1], [6]), ([2], [37]), ([3], [64])]
    assert align((6, 37, 37), (2, 3, 37, 37)) == [([0], [2, 3]), ([1], [37]), ([2], [37])]
    assert align((3, 33), (3, 1, 33)) == [([0], [3]), ([], [1]), ([1], [33])]
    assert align((6, 5), (4, 7)) is None


def test_a_split_reads_its_dims_from_an_input_that_has_them():
    f32 = torch.float32
    graph = OpGraph((OpNode("q", "input", (), {"arg": "q"}, (2, 3, 37, 64), f32),
                     OpNode("s", "bmm", (Ref("q"),), {}, (6, 37, 37), f32),
                     OpNode("back", "view", (Ref("s"),), {"dims": (2, 3, 37, 37)}, (2, 3, 37, 37), f32),
                     OpNode("odd", "view", (Ref("s"),), {"dims": (3, 2, 1369)}, (3, 2, 1369), f32)), "back")
    assert view_dims(graph.node("back"), graph) == ["q.shape[0]", "q.shape[1]", "s.shape[1]", "s.shape[2]"]
    # no tensor holds (3, 2) side by side: one dim is -1, the other stays (the second-size check tells)
    assert view_dims(graph.node("odd"), graph) == ["-1", "2", "s.shape[1] * s.shape[2]"]
