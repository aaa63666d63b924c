"""How much of a forward the built-in plan runs in our kernels (coverage.py), and a plan that
saves nothing is not submitted as an improvement (policy.py), through a real toolbox.

    pytest -q tests/test_builtin_coverage.py
"""
from agent.builtin import BuiltinPolicy, search
from agent.builtin.coverage import coverage
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from tests.builtin_helpers import extra_problem, small
from tests.test_builtin_policy import drive
from tools.device import detect
from tools.history import HistoryStore, Origin
from tools.records import EvalStatus
from tools.toolbox import Toolbox


def cover(problem, config: Config | None = None):
    plan = make_plan(problem)
    stages = list(plan.stages)
    return coverage(plan.graph, stages, config or search.default_config(stages, plan.graph), None, plan.captured)


def test_a_fused_forward_is_wholly_ours():
    assert cover(small("07_rmsnorm")).line() == ("Coverage: our Triton kernels (1) run the whole forward (6 of its 6 "
                                                 "ops wholly); nothing stays in PyTorch.")


def test_what_stays_in_pytorch_is_named_with_why_and_its_share(tmp_path):
    found = cover(extra_problem(tmp_path, "gemm_batchnorm_relu"))      # batch norm over (N, C), an fp32 GEMM
    assert [(k.name, k.label) for k in found.kept] == [("linear", "cuBLAS (linear)"), ("bn", "self.bn")]
    assert (found.ops, found.ours, found.kernels) == (3, 1, 1)
    assert 0 < found.kept_share < 1
    line = found.line()
    assert f"run about {1 - found.kept_share:.0%} of the forward's estimated time and 1 of its 3 ops wholly" in line
    assert "`bn` (self.bn: " in line and "not measured" in line


def test_the_configuration_decides_where_a_gemm_runs(tmp_path):
    problem = extra_problem(tmp_path, "gemm_logsumexp")
    on_cublas, in_triton = cover(problem, Config(gemm_library=True)), cover(problem, Config(gemm_library=False))
    assert [k.label for k in on_cublas.kept] == ["cuBLAS (linear)"] and in_triton.kept == ()
    assert (on_cublas.kernels, in_triton.kernels) == (1, 2)


MASKED_MEAN = ("return (x * self.w).sum(1) / self.w.sum()", "torch.randn(4, 50, 16)", "0, 0", None,
               "self.w = nn.Parameter(torch.rand(50, 1))")


def test_a_plan_that_saves_nothing_is_checked_but_not_submitted(tmp_path, evaluator):
    """A masked mean whose plan moves eager's bytes in more launches ("0% less"): it was
    submitted as the answer all the same."""
    problem = extra_problem(tmp_path, "masked_mean", MASKED_MEAN)
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    toolbox = Toolbox(problem, evaluator, store, session="saves-nothing", origin=Origin("builtin", "builtin-0.1"))
    turns, attempts = drive(BuiltinPolicy(history=store), toolbox, problem, detect(force_cpu=True))
    assert [(a.tool, a.status) for a in attempts] == [("benchmark", EvalStatus.CORRECT)]
    assert store.submission("saves-nothing") is None
    assert "(0% less)" in turns[0].text
    assert "nothing saved on paper" in turns[-1].text and "not submitted as an improvement" in turns[-1].text
