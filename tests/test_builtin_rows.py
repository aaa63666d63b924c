"""Row programs (plans/rows.py, plans/long_rows.py, plans/split_rows.py): a row walked in
steps is correct, and so is one split into segments; rows longer than registers hold are
walked by default, and split when they are few; scans over them are refused.

    pytest -q tests/test_builtin_rows.py
"""
import pytest

from agent.builtin import BuiltinPolicy
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from agent.builtin.search import space_for
from tests.builtin_helpers import extra_problem
from tools.records import EvalStatus


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


@pytest.mark.parametrize("body, inputs", [
    ("return torch.softmax(x * 30.0, dim=1)", "torch.randn(3, 1000)"),     # the max grows block after block
    ("return torch.log_softmax(x, dim=1)", "torch.randn(3, 100)"),         # lanes 100-127 never see an element
    ("return torch.logsumexp(x - 40.0, dim=1)", "torch.rand(4, 300)")])
def test_a_walked_softmax_reads_its_row_once_for_both_statistics(body, inputs, tmp_path, evaluator):
    problem = extra_problem(tmp_path, "online_softmax", (body, inputs, "0, 0", ["rows"], "pass"))
    source = BuiltinPolicy().source(problem, Config(row_block=128))
    loops = source.count("for start in range(0, n_cols, BLOCK_N)")
    assert "grown = tl.maximum(acc_1, x)" in source and loops == (1 if "logsumexp" in body else 2)
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


@pytest.mark.parametrize("name", sorted(WALKED))
def test_a_walked_row_split_into_segments_is_correct(name, tmp_path, evaluator):
    problem = extra_problem(tmp_path, name, WALKED[name])
    source = BuiltinPolicy().source(problem, Config(row_block=128, row_split=16))
    # 2-6 rows of 143-1000 elements: 16 programs give most rows several segments of 128 elements
    assert "seg = tl.program_id(axis=1)" in source and "_p2_kernel[(n_rows, n_split)]" in source
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


def test_few_long_rows_are_split_and_many_are_not(tmp_path, evaluator):
    few = extra_problem(tmp_path, "few_long_rows", ("return self.ln(x)", "torch.rand(2, 3, 200, 128)", "0, 0", None,
                                                    "self.ln = nn.LayerNorm((3, 200, 128))"))
    plan = make_plan(few)
    space = space_for(list(plan.stages), plan.graph, True, False)
    assert space.start.row_split == 1024 and space.axes["row_split"][0] == 0      # 2 rows of 76800
    source = BuiltinPolicy().source(few, space.start)
    assert "_p3_kernel" in source and evaluator.evaluate(few, source).status is EvalStatus.CORRECT
    many = extra_problem(tmp_path, "many_long_rows", ("return torch.softmax(x, dim=1)", "torch.randn(300, 70001)",
                                                      "0, 0", ["rows"], "pass"))
    plan = make_plan(many)
    space = space_for(list(plan.stages), plan.graph, True, False)
    assert space.start.row_split == 0 and "row_split" not in space.axes


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
