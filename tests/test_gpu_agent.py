"""GPU checks of the agent's tools (`pytest -m gpu` on the device machine): Nsight Compute
counters in `profile` where `ncu` is installed."""
import pytest

from tests.conftest import CANDIDATES, PROBLEMS, read
from tools.ncu import ncu_path, nsight_compute
from tools.problems import load_problem

pytestmark = pytest.mark.gpu      # skipped without CUDA, or failed: tests/conftest.py


@pytest.mark.skipif(ncu_path() is None, reason="ncu (Nsight Compute) is not installed")
def test_nsight_compute_counts_the_candidates_kernel():
    problem = load_problem(PROBLEMS / "07_rmsnorm.py")
    report = nsight_compute(problem, read(CANDIDATES / "07_rmsnorm.py"), cuda_index=0)
    print(report.text())      # recorded in the issue note
    assert report.available and report.kernels, report.reason
    kernel = report.kernels[0]
    assert "rmsnorm" in kernel.name and kernel.duration_us > 0 and 0 < kernel.dram_pct <= 100
