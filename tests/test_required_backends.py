"""The switches that turn a missing backend from a skip into a failure: a CI machine whose
PostgreSQL did not install, or a GPU machine whose CUDA is broken, must not pass with the
tests that need them skipped. Each runs one real test in a child pytest, with and without
the switch, where the backend is missing (no server binaries; no CUDA device visible); the
two children of a test run at once."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_pytests(node: str, tmp_path: Path, *runs: tuple[tuple[str, ...], dict[str, str]]) -> list[str]:
    """The last line of a child pytest of `node` for each (options, environment) run; the
    children run at once (each spends most of its time importing torch)."""
    children = []
    for index, (options, env) in enumerate(runs):
        environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        environment.pop("KERNELPILOT_TEST_PG_URL", None)
        children.append(subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                          "--basetemp", str(tmp_path / f"base{index}"), *options, node],
                                         cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True))
    return [child.communicate(timeout=300)[0].strip().splitlines()[-1] for child in children]


def test_postgres_tests_fail_instead_of_skipping_when_required(tmp_path):
    node = "tests/test_history.py::test_postgres_records_and_reads_back"
    missing = {"KERNELPILOT_TEST_PG_BIN": str(tmp_path / "no-postgres-here")}
    unrequired, required = child_pytests(node, tmp_path, ((), missing | {"KERNELPILOT_REQUIRE_POSTGRES": "0"}),
                                         ((), missing | {"KERNELPILOT_REQUIRE_POSTGRES": "1"}))
    assert "1 skipped" in unrequired
    assert "1 error" in required


def test_gpu_tests_fail_instead_of_skipping_when_required(tmp_path):
    node = "tests/test_gpu.py::test_honest_candidate_is_timed_against_both_baselines"
    hidden = {"CUDA_VISIBLE_DEVICES": ""}
    unrequired, required = child_pytests(node, tmp_path, (("-m", "gpu"), hidden | {"KERNELPILOT_REQUIRE_GPU": "0"}),
                                         (("-m", "gpu"), hidden | {"KERNELPILOT_REQUIRE_GPU": "1"}))
    assert "1 skipped" in unrequired
    assert "1 error" in required
