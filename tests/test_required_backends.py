"""The switches that turn a missing backend from a skip into a failure: a CI machine whose
PostgreSQL did not install, or a GPU machine whose CUDA is broken, must not pass with the
tests that need them skipped. Each runs one real test in a child pytest, with and without
the switch, where the backend is missing (no server binaries; no CUDA device visible)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_pytest(node: str, tmp_path: Path, *options: str, **env: str) -> str:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environment.pop("KERNELPILOT_TEST_PG_URL", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--basetemp", str(tmp_path / "base"), *options, node],
                         cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    return run.stdout.strip().splitlines()[-1]


def test_postgres_tests_fail_instead_of_skipping_when_required(tmp_path):
    node = "tests/test_history.py::test_postgres_records_and_reads_back"
    missing = {"KERNELPILOT_TEST_PG_BIN": str(tmp_path / "no-postgres-here")}
    assert "1 skipped" in child_pytest(node, tmp_path, **missing, KERNELPILOT_REQUIRE_POSTGRES="0")
    assert "1 error" in child_pytest(node, tmp_path, **missing, KERNELPILOT_REQUIRE_POSTGRES="1")


def test_gpu_tests_fail_instead_of_skipping_when_required(tmp_path):
    node = "tests/test_gpu.py::test_honest_candidate_is_timed_against_both_baselines"
    hidden = {"CUDA_VISIBLE_DEVICES": ""}
    assert "1 skipped" in child_pytest(node, tmp_path, "-m", "gpu", **hidden, KERNELPILOT_REQUIRE_GPU="0")
    assert "1 error" in child_pytest(node, tmp_path, "-m", "gpu", **hidden, KERNELPILOT_REQUIRE_GPU="1")
