"""The kernel plans (plans/) on KernelBench level-2 shapes of work beyond our suite: each
plans into the expected stages and is correct in the interpreter; batch norm follows its
module in training and eval mode; a bare fp32 GEMM goes to cuBLAS beside a Triton kernel; an
exact fp32 GEMM copies a K-fastest B N-fastest first.

    pytest -q tests/test_builtin_plans.py
"""
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from agent.builtin import BuiltinPolicy
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from agent.builtin.search import space_for
from tests.builtin_helpers import EXTRA, extra_problem
from tools.records import EvalStatus


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
    problem = extra_problem(tmp_path, "batchnorm_scale_relu")
    candidate = tmp_path / "candidate.py"
    candidate.write_text(BuiltinPolicy().source(problem, Config()))
    script = tmp_path / "modes.py"
    script.write_text(BATCHNORM_MODES)
    done = subprocess.run([sys.executable, str(script), str(problem.path), str(candidate)], capture_output=True,
                          text=True, env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-3000:]


@pytest.mark.parametrize("name", ["gemm_logsumexp", "gemm_batchnorm_relu"])
def test_a_bare_fp32_gemm_goes_to_cublas_when_a_triton_kernel_remains(name, tmp_path, evaluator):
    problem = extra_problem(tmp_path, name)
    plan = make_plan(problem)
    start = space_for(list(plan.stages), plan.graph, True, False).start
    source = BuiltinPolicy().source(problem, start)
    assert start.gemm_library and "F.linear(x, self.linear.weight, self.linear.bias)  # cuBLAS" in source
    assert "tl.dot" not in source and "@triton.jit" in source
    assert evaluator.evaluate(problem, source).status is EvalStatus.CORRECT


def test_the_wrappers_broadcast_in_plain_python_by_torchs_rule():
    """torch.broadcast_shapes costs tens of microseconds a call (56 us here, more than a launch):
    the pointwise and total wrappers use the emitted `_broadcast_shape`, which must agree with it."""
    import torch

    from agent.builtin.plans.common import BROADCAST_HELPER
    from tools.problems import load_problem
    from tests.conftest import PROBLEMS

    namespace = {"torch": torch}
    exec(BROADCAST_HELPER, namespace)
    broadcast = namespace["_broadcast_shape"]
    for shapes in [((4, 5), (5,), (1, 5)), ((), (3,)), ((2, 1, 4), (3, 1)), ((0, 3), (1, 3)), ((7,), (7,)),
                   ((1,), (1, 1, 1)), ((8, 1, 6, 1), (7, 1, 5))]:
        sizes = [torch.Size(s) for s in shapes]
        assert broadcast(*sizes) == torch.broadcast_shapes(*sizes) and type(broadcast(*sizes)) is torch.Size
    with pytest.raises(RuntimeError, match="do not broadcast"):
        broadcast(torch.Size((2, 3)), torch.Size((4, 3)))
    source = BuiltinPolicy().source(load_problem(PROBLEMS / "01_scale_bias_relu_chain.py"), Config())
    assert "_broadcast_shape(" in source and "torch.broadcast_shapes" not in source


@pytest.mark.parametrize("forward, layers, copied", [
    ("return x @ self.w.T", "self.w = nn.Parameter(torch.randn(b, a))", True),     # b.T: K fastest
    ("return self.linear(x)", "self.linear = nn.Linear(a, b)", True),              # a Linear's weight
    ("return x @ self.w", "self.w = nn.Parameter(torch.randn(a, b))", False),      # N fastest already
])
def test_an_exact_fp32_gemm_copies_a_k_fastest_b_n_fastest_first(forward, layers, copied, tmp_path, evaluator):
    """Exact fp32 tl.dot reads a K-fastest B 2x slower: such a B is copied by `_n_major` (from 256
    rows of A), the search may turn the copy off, and both ways are correct."""
    problem = extra_problem(tmp_path, "gemm_b", (forward, "torch.rand(260, 24)", "24, 40", ["matmul"], layers))
    plan = make_plan(problem)
    space = space_for(list(plan.stages), plan.graph, True, False)
    assert not space.start.gemm_library and space.start.gemm_b_copy
    assert ("gemm_b_copy" in space.axes) is copied
    source = BuiltinPolicy().source(problem, space.start)
    assert ("_n_major(b, K, N" in source) is copied and ("def _n_major" in source) is copied
    assert evaluator.evaluate(problem, source).status is EvalStatus.CORRECT
    if copied:
        plain = BuiltinPolicy().source(problem, replace(space.start, gemm_b_copy=False))
        assert "_n_major" not in plain and "tl.dot" in plain
        assert evaluator.evaluate(problem, plain).status is EvalStatus.CORRECT
