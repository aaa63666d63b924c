"""The launch-configuration search (search.py) and the GPU turns it drives: neighbours of
the fastest, winners kept, history counted as measured, cuBLAS first for an fp32 GEMM with
a chain, CUDA graphs for launch-bound plans. Decisions only: nothing runs on a GPU.

    pytest -q tests/test_builtin_search.py
"""
import json
from dataclasses import replace

from agent.builtin import BuiltinPolicy
from agent.builtin.analysis import Work, launch_bound
from agent.builtin.plans.common import Config
from agent.builtin.search import Space, neighbours, next_config, space_for
from agent.policy import Attempt
from tests.builtin_helpers import GPU, H100_CEILINGS, first_turn, small
from tests.conftest import PROBLEMS
from tools.history import HistoryStore, Origin
from tools.problems import load_problem
from tools.records import EvalResult, EvalStatus, Mode


def attempt(policy, problem, config, speedup, tool="benchmark", status=EvalStatus.CORRECT):
    runtime = None if speedup is None else 1.0 / speedup
    return Attempt(1, tool, 1, policy.source(problem, config), status, runtime, speedup, speedup)


def test_search_walks_to_neighbours_of_the_fastest():
    space = Space({"block": (512, 1024, 2048), "warps": (4, 8)}, Config(block=1024, warps=4))
    assert next_config(space, {}, 5) == space.start
    measured = {space.start: 2.0, Config(block=2048, warps=4): 1.0}
    assert next_config(space, measured, 5) == Config(block=2048, warps=8)
    assert next_config(space, measured, 0) is None
    assert neighbours(space.start, space) == [Config(block=2048), Config(block=512), Config(block=1024, warps=8)]


def test_gpu_search_keeps_winners_and_never_submits_a_slower_kernel():
    problem = small("01_scale_bias_relu_chain")
    policy = BuiltinPolicy(budget=3, ceilings=H100_CEILINGS)
    plan = policy.plan(problem)
    bound = launch_bound(Work.of(plan.graph, list(plan.stages)), H100_CEILINGS, list(plan.stages))
    assert bound is True                    # the small size on an H100 is launch-bound ...
    start = space_for(list(plan.stages), plan.graph, True, bound).start
    assert start.cuda_graph                 # ... so the search starts from a CUDA graph
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
    assert bound is True                            # the small size on an H100 is launch-bound ...
    space = space_for(list(plan.stages), plan.graph, True, bound)
    assert space.start.cuda_graph                   # ... so the plan starts as a CUDA graph
    plain = replace(space.start, cuda_graph=False)  # what the interpreter can run
    library, dot = policy.source(problem, plain), policy.source(problem, replace(plain, gemm_library=False))
    assert space.start.gemm_library and "F.linear(" in library and "tl.dot" not in library and "tl.dot" in dot
    for source in (library, dot):
        assert evaluator.evaluate(problem, source).status is EvalStatus.CORRECT
    first = first_turn(policy, problem, GPU)
    assert json.loads(first.tool_calls[0].arguments)["code"] == policy.source(problem, space.start)
    assert "on cuBLAS" in first.text
    second = first_turn(policy, problem, GPU, [attempt(policy, problem, space.start, 1.1)])
    assert list(space.axes)[:2] == ["cuda_graph", "gemm_library"]    # the CUDA-graph switch first, then the library
    assert json.loads(second.tool_calls[0].arguments)["code"] == library  # the graph's first neighbour: no CUDA graph
    both = [attempt(policy, problem, space.start, 1.1), attempt(policy, problem, replace(space.start, gemm_library=False), 0.5),
            attempt(policy, problem, plain, 1.0)]                          # the graph's first neighbour, measured
    for _ in range(4 - len(both)):   # the rest of the budget changes the epilogue's launch, never only the moot tile
        nxt = json.loads(first_turn(policy, problem, GPU, both).tool_calls[0].arguments)["code"]
        assert nxt not in [a.code for a in both] + [library, dot] and "F.linear(" in nxt
        both.append(Attempt(1, "benchmark", 3, nxt, EvalStatus.CORRECT, 2.0, 0.5, 0.5))


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
