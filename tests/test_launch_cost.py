"""benchmarks/launch_cost.py: what it measures on a GPU (marked `gpu`) and its refusal without one."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.builds import first_candidate
from tools.problems import load_problem

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.mark.gpu
def test_a_bare_launch_is_one_kernel_and_costs_host_time():
    from benchmarks.launch_cost import bare_cases
    rows = {r.case: r for r in bare_cases(calls=300)}
    bare = rows["triton kernel[grid](...)"]
    assert bare.launches == 1 and bare.host_us_per_call > 0 and bare.gpu_us_per_call > 0
    assert rows["eager torch.mul (one ATen launch)"].launches == 1
