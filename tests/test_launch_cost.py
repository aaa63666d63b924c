"""benchmarks/launch_cost.py: what it measures on a GPU (marked `gpu`) and its refusal without one."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.builds import first_candidate
from tools.problems import load_problem

ROOT = Path(__file__).resolve().parent.parent


def test_a_round_queues_at_most_QUEUE_operations_copies_included():
    from benchmarks.launch_cost import QUEUE, round_size
    # a one-kernel CUDA graph queues three operations a call (input copy, replay, output clone):
    # sized by its one kernel, 512 calls queued 1,536 and the host waited on the sleeping GPU
    assert round_size(2000, 3) * 3 <= QUEUE < round_size(2000, 1) * 3
    assert round_size(2000, 15) == QUEUE // 15 and round_size(40, 1) == 40 and round_size(2000, QUEUE * 2) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU refusal")
def test_without_a_gpu_it_refuses_in_one_line():
    done = subprocess.run([sys.executable, "-m", "benchmarks.launch_cost"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "launch_cost: no CUDA device: this benchmark measures GPU launches and needs a GPU"
    assert done.stdout == ""


def test_the_wrapped_candidate_is_the_builtin_policys_first(tmp_path):
    problem = load_problem(ROOT / "benchmarks" / "problems" / "01_scale_bias_relu_chain.py", size="small")
    module, config = first_candidate(problem, tmp_path)
    assert "triton.jit" in (tmp_path / "candidate_01_scale_bias_relu_chain.py").read_text()
    assert not config.cuda_graph
    module.ModelNew(*problem.init_inputs())


def test_the_graph_row_is_the_same_plan_with_cuda_graph_on(tmp_path):
    from benchmarks.launch_cost import GRAPHED, suite

    assert [p.stem for p in suite(GRAPHED)] == GRAPHED.split(",") and suite("") == []
    problem = load_problem(ROOT / "benchmarks" / "problems" / "24_tiny_mlp.py", size="small")
    (_, plain), (_, graphed) = first_candidate(problem, tmp_path), first_candidate(problem, tmp_path, cuda_graph=True)
    assert not plain.cuda_graph and graphed.cuda_graph and {f.name for f in tmp_path.iterdir()} == {
        "candidate_24_tiny_mlp.py", "candidate_24_tiny_mlp_cuda_graph.py"}
    assert "replay_as_cuda_graph(self" in (tmp_path / "candidate_24_tiny_mlp_cuda_graph.py").read_text()
    assert "replay_as_cuda_graph(self" not in (tmp_path / "candidate_24_tiny_mlp.py").read_text()


@pytest.mark.gpu
def test_a_graph_replay_counts_the_forwards_kernels(tmp_path):
    from benchmarks.launch_cost import PROBLEMS, wrapper_case
    row = wrapper_case(PROBLEMS / "24_tiny_mlp.py", 200, tmp_path, graph=True)
    assert row.case == "graph 24_tiny_mlp (small)" and row.launches > 1 and row.host_us_per_call > 0, row
    assert abs(row.host_us_per_launch * row.launches - row.host_us_per_call) < 1e-6 * row.host_us_per_call


@pytest.mark.gpu
def test_a_bare_launch_is_one_kernel_and_costs_host_time():
    from benchmarks.launch_cost import bare_cases
    rows = {r.case: r for r in bare_cases(calls=300)}
    bare = rows["triton kernel[grid](...)"]
    assert bare.launches == 1 and bare.host_us_per_call > 0 and bare.gpu_us_per_call > 0
    assert rows["eager torch.mul (one ATen launch)"].launches == 1
